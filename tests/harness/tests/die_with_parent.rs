//! A server started with `die_with_parent` lives as long as the thread that started it.

use std::time::{Duration, Instant};

use offpath_harness::NatsServer;

fn start_on_a_thread_that_exits(die_with_parent: bool) -> NatsServer {
    std::thread::spawn(move || {
        NatsServer::builder()
            .die_with_parent(die_with_parent)
            .start()
            .unwrap_or_else(|err| panic!("cannot start nats-server: {err}"))
    })
    .join()
    .expect("starter thread")
}

/// With `die_with_parent(true)` the server is killed when its starting thread exits (which
/// is why the launcher starts it on the main thread); by default it keeps running.
#[test]
fn server_dies_with_the_thread_that_started_it() {
    let mut tied = start_on_a_thread_that_exits(true);
    let mut free = start_on_a_thread_that_exits(false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tied.is_running() {
        assert!(
            Instant::now() < deadline,
            "server outlived its starting thread"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        free.is_running(),
        "a server without the option keeps running"
    );
}
