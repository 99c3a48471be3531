//! The deployment's NATS configuration (`deploy/nats/`): the committed `auth.conf` is what
//! `offpath nats-auth` prints, and nats-server (the one the harness finds, and Debian's
//! 2.9 when installed) accepts the configuration with every password variable set and
//! refuses it when one is missing. To update after changing the permissions:
//! `OFFPATH_BLESS=1 cargo test --test auth nats_auth_deploy` and commit the diff.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::BIN;

/// The generator's arguments for the committed file: the users compose.yaml runs (its one
/// gateway, `acme`'s `gw1`), so a first boot needs no password for a user nothing uses
/// (`tests/containers.rs` checks that compose and this file agree). A tenant is added with
/// another `--transport <tenant>=<instance>` (docs/deploy.md, "Adding a tenant").
const ARGS: [&str; 2] = ["--transport", "acme=gw1"];
const PASSWORDS: [&str; 4] = [
    "OFFPATH_NATS_PASSWORD_TOPOLOGY",
    "OFFPATH_NATS_PASSWORD_MODERATOR",
    "OFFPATH_NATS_PASSWORD_REVIEWER",
    "OFFPATH_NATS_PASSWORD_TRANSPORT_ACME_GW1",
];

fn deploy_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nats"))
}

/// The committed `deploy/nats/auth.conf` equals what the generator prints now: the
/// deployment cannot drift from the permissions in code.
#[test]
fn committed_auth_conf_is_generated() {
    let mut command = Command::new(BIN);
    command.arg("nats-auth").args(ARGS);
    let output = command.output().expect("run offpath nats-auth");
    assert!(output.status.success(), "{output:?}");
    let generated = String::from_utf8(output.stdout).expect("UTF-8");
    let path = deploy_dir().join("auth.conf");
    if std::env::var_os("OFFPATH_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write auth.conf");
    }
    let committed = std::fs::read_to_string(&path).expect("read auth.conf");
    assert!(
        committed == generated,
        "deploy/nats/auth.conf differs from `offpath nats-auth`: run \
         `OFFPATH_BLESS=1 cargo test --test auth nats_auth_deploy` and review the diff"
    );
}

/// nats-server accepts the deployment config with the password variables set, and
/// refuses to start when one is missing (no user is ever left without a password).
#[test]
fn deployment_config_loads_only_with_every_password() {
    let mut binaries = vec![offpath_harness::find_binary().expect("nats-server")];
    let debian = Path::new("/usr/sbin/nats-server");
    if debian.exists() {
        binaries.push(debian.to_path_buf());
    }
    let config = deploy_dir().join("nats-server.conf");
    for binary in binaries {
        let check = |missing: Option<&str>| {
            let mut command = Command::new(&binary);
            command.arg("-c").arg(&config).arg("-t");
            for name in PASSWORDS {
                command.env_remove(name);
                if Some(name) != missing {
                    command.env(name, "not-a-real-password");
                }
            }
            command.output().expect("run nats-server -t")
        };
        let all = check(None);
        assert!(all.status.success(), "{}: {all:?}", binary.display());
        let without = check(Some(PASSWORDS[2]));
        assert!(
            !without.status.success(),
            "{}: started without a password",
            binary.display()
        );
        let said = String::from_utf8_lossy(&without.stderr).to_string()
            + &String::from_utf8_lossy(&without.stdout);
        assert!(said.contains(PASSWORDS[2]), "{said}");
    }
}

/// The cluster node config of compose.yaml (`deploy/nats/cluster.conf`: routes, JetStream,
/// the same users) is accepted by nats-server (both versions when installed) with a node
/// name and every password set, and refused without the node name.
#[test]
fn cluster_config_loads_with_a_node_name() {
    let mut binaries = vec![offpath_harness::find_binary().expect("nats-server")];
    let debian = Path::new("/usr/sbin/nats-server");
    if debian.exists() {
        binaries.push(debian.to_path_buf());
    }
    let config = deploy_dir().join("cluster.conf");
    for binary in binaries {
        let check = |name: Option<&str>| {
            let mut command = Command::new(&binary);
            command.arg("-c").arg(&config).arg("-t");
            command.env_remove("NATS_SERVER_NAME");
            if let Some(name) = name {
                command.env("NATS_SERVER_NAME", name);
            }
            for password in PASSWORDS {
                command.env(password, "not-a-real-password");
            }
            command.output().expect("run nats-server -t")
        };
        let named = check(Some("nats-1"));
        assert!(named.status.success(), "{}: {named:?}", binary.display());
        let unnamed = check(None);
        assert!(
            !unnamed.status.success(),
            "{}: no node name",
            binary.display()
        );
    }
}
