//! Pinning for `--pin`: the chat side and the moderation side on separate halves of the
//! CPUs.

/// Which CPUs the chat side gets (the transport and this load generator, whose clients
/// measure the latency) and which the moderation side (moderators, nats-server). On one
/// machine this stands in for a deployment where inference and NATS run on their own
/// hardware: ONNX Runtime's worker threads spin while they wait, and sharing cores with
/// them delays whatever else runs there, including the clients that take the measurement.
/// The same split applies to every scenario.
pub(super) struct CpuSplit {
    pub(super) chat: String,
    pub(super) rest: String,
}

impl CpuSplit {
    pub(super) fn of_this_machine() -> Option<Self> {
        let n = std::thread::available_parallelism().ok()?.get();
        let taskset = std::process::Command::new("taskset")
            .arg("-V")
            .stdout(std::process::Stdio::null())
            .status();
        if n < 2 || !taskset.is_ok_and(|s| s.success()) {
            return None;
        }
        let half = n / 2;
        Some(Self {
            chat: if half == 1 {
                "0".to_string()
            } else {
                format!("0-{}", half - 1)
            },
            rest: if half == n - 1 {
                half.to_string()
            } else {
                format!("{half}-{}", n - 1)
            },
        })
    }
}
