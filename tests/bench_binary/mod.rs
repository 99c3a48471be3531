//! `offpath bench` runs the `offpath-bench` binary from beside `offpath`. That binary
//! belongs to another package (`benches/load`): cargo builds it for the workspace
//! (`scripts/test`) and for `cargo build` at the root, but not for `-p offpath` alone, and
//! offers no stable way to depend on another package's binary. So the tests that run a
//! scenario build it first, into the folder and profile of the `offpath` under test (a
//! no-op when it is fresh, skipped when `scripts/test` has just built the workspace).

use std::path::Path;
use std::process::Command;

/// Builds `offpath-bench` beside `offpath`; panics when the build fails.
///
/// `scripts/test` builds the whole workspace (`offpath-bench` included) before it runs the
/// tests and says so with `OFFPATH_BENCH_BUILT=1`: then the binary is used as it is. A
/// build for `-p offpath-bench` alone unifies features differently from the workspace's
/// and rebuilt dozens of crates (45 s, twice that on a loaded machine).
pub(crate) fn build() {
    let bin = Path::new(env!("CARGO_BIN_EXE_offpath"));
    let profile_dir = bin.parent().expect("the binary's folder");
    if std::env::var_os("OFFPATH_BENCH_BUILT").is_some()
        && profile_dir.join("offpath-bench").is_file()
    {
        return;
    }
    let target_dir = profile_dir.parent().expect("the target folder");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "offpath-bench",
            "--profile",
            profile,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo build -p offpath-bench failed");
    assert!(
        profile_dir.join("offpath-bench").is_file(),
        "offpath-bench not beside {}",
        bin.display()
    );
}
