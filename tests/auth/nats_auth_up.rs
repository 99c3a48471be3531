//! `offpath up`'s local nats-server runs with authorization on: its config (0600, beside
//! the JetStream store) holds a random password per role, no password appears on any
//! process's command line (`ps` shows those to every local user), and an anonymous client
//! is refused. On `main` the local server had no users at all: anyone on the machine could
//! read every message and delete the streams.

use crate::common;

use std::os::unix::fs::PermissionsExt;

use offpath_harness::secure::up_credentials;
use offpath_protocol::permissions::Role;

/// Kills the launcher (its children die with it) when the test ends.
/// Every process's command line, as `ps` shows them.
fn all_command_lines() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .collect()
}

/// The local server's passwords are random, kept 0600, never on a command line, and the
/// server refuses anonymous clients.
#[tokio::test]
async fn up_secures_its_local_nats_server() {
    let data = tempfile::tempdir().expect("tempdir");
    let launched = common::start_up(data.path(), &["--transport-arg=--tenant=acme"]);
    let url = launched.fields["url"].as_str().expect("url").to_string();

    let config = data.path().join(offpath_harness::nats::CONFIG_FILE);
    let mode = std::fs::metadata(&config)
        .expect("config")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the config holding passwords is {mode:o}"
    );
    let text = std::fs::read_to_string(&config).expect("read the config");
    let passwords: Vec<&str> = text
        .split("password: \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(
        passwords.len(),
        4,
        "topology, moderator, transport-acme-<instance>, integration-acme"
    );
    assert!(text.contains("user: \"transport-acme-"), "{text}");
    assert!(text.contains("user: \"integration-acme\""), "{text}");
    let lines = all_command_lines();
    for password in passwords {
        assert!(password.len() >= 32, "a short password");
        assert!(
            !lines.iter().any(|line| line.contains(password)),
            "a password is on a command line"
        );
    }
    assert!(
        async_nats::connect(&url).await.is_err(),
        "the local server accepted an anonymous client"
    );
    let moderator = up_credentials(data.path(), &Role::Moderator).expect("moderator");
    moderator
        .connect(&url)
        .await
        .expect("the moderator's login works");
}
