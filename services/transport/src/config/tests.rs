//! Tests of the transport's settings.

use super::*;

/// Set in the copy of this test binary that `default_ignores_the_environment` starts.
const CHILD: &str = "OFFPATH_TEST_DEFAULT_CHILD";

/// Printed by the copy of this test that runs with [`CHILD`] set, after its checks.
const CHILD_CHECKED: &str = "default_ignores_the_environment: checked in the child";

/// `Config::default()` reads no environment: variables that change what clap parses
/// leave the default alone. The variables are set in a second run of this test binary
/// (setting them here would race the other tests), which must run exactly this one test:
/// a path that matched nothing would run zero tests and pass.
#[test]
fn default_ignores_the_environment() {
    if std::env::var_os(CHILD).is_some() {
        let config = Config::default();
        assert_eq!(config.tenant, defaults::TENANT);
        assert_eq!(config.limits.send_queue, defaults::SEND_QUEUE);
        println!("{CHILD_CHECKED}");
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "config::tests::default_ignores_the_environment",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("OFFPATH_TENANT", "from-env")
        .env("OFFPATH_SEND_QUEUE", "7")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "Config::default() read the environment: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("running 1 test") && stdout.contains(" 1 passed;"),
        "the second run did not run exactly this test (its path changed?): {stdout}"
    );
    assert!(
        stdout.contains(CHILD_CHECKED),
        "the child did not check: {stdout}"
    );
}

/// An empty command line gives exactly `Config::default()`: clap and `Default` read
/// the same constants. (Assumes no `OFFPATH_…` transport variable is set in the test's
/// environment.)
#[test]
fn clap_defaults_are_the_default() {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        config: Config,
    }
    let parsed = Wrapper::try_parse_from(["transport"])
        .expect("parses")
        .config;
    assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::default()));
}

/// Rules match exact names and prefixes, first rule wins, the default covers the rest.
#[test]
fn room_rules() {
    let config = Config {
        moderation: ModerationConfig {
            room_policy: vec![
                "kids-*=hold:fail_closed".parse().unwrap(),
                "lobby=post:fail_closed".parse().unwrap(),
                "dm-*=e2e".parse().unwrap(),
            ],
            ..Config::default().moderation
        },
        ..Config::default()
    };
    assert_eq!(config.policy_of("kids-1").to_string(), "hold:fail_closed");
    let dm = config.policy_of("dm-alice-bob");
    assert!(dm.e2e && !dm.hold, "{dm}");
    assert_eq!(dm.to_string(), "e2e:fail_open");
    assert_eq!(config.policy_of("lobby").to_string(), "post:fail_closed");
    assert_eq!(config.policy_of("other").to_string(), "post:fail_open");
    assert!(config.validate().is_ok());
}

/// Malformed rules and settings are refused with a message naming the problem.
#[test]
fn bad_settings_are_refused() {
    assert!(
        "lobby"
            .parse::<RoomRule>()
            .unwrap_err()
            .contains("room=mode")
    );
    assert!(
        "x=later"
            .parse::<RoomRule>()
            .unwrap_err()
            .contains("post, hold or e2e")
    );
    assert!(
        "x=hold:maybe"
            .parse::<RoomRule>()
            .unwrap_err()
            .contains("fail_open")
    );
    let config = Config {
        tenant: "a.b".into(),
        limits: LimitsConfig {
            send_queue: 0,
            ..Config::default().limits
        },
        ..Config::default()
    };
    let problems = config.validate().unwrap_err().join("; ");
    assert!(problems.contains("--tenant") && problems.contains("--send-queue"));
}
