//! The launcher's NATS login and TLS flags against a real nats-server with authorization
//! and TLS on (a throwaway CA from the harness): `offpath topology` connects when given the
//! CA (and, where the server verifies clients, a client certificate) and fails clearly
//! without. On `main` none of these flags existed: every service connected anonymously
//! and in plaintext.

use crate::common;

use std::time::Duration;

use async_nats::jetstream;
use common::output_within;
use offpath_harness::NatsServer;
use offpath_harness::secure::{self, SecuredNats};
use offpath_harness::tls::TestPki;
use offpath_protocol::permissions::Role;

const WITHIN: Duration = Duration::from_secs(30);

fn server(pki: &TestPki, verify: bool) -> SecuredNats {
    secure::start_with(
        NatsServer::builder(),
        &[Role::Topology],
        &pki.server_block(verify),
    )
    .unwrap_or_else(|err| panic!("cannot start nats-server: {err}"))
}

/// `offpath topology` with `extra` flags as the topology user; exit code and stderr.
fn topology(nats: &SecuredNats, extra: &[&str]) -> (Option<i32>, String) {
    let url = nats.server.url();
    let mut args = vec!["topology", "--nats-url", &url, "--nats-user", "topology"];
    args.extend(extra);
    let password = nats.credentials(&Role::Topology).password.clone();
    let out = output_within(&args, &[("OFFPATH_NATS_PASSWORD", &password)], WITHIN);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// TLS connects when the CA is given (the streams are then created) and fails, with the
/// certificate named in the error, without it.
#[tokio::test]
async fn tls_connects_with_the_ca_and_fails_clearly_without() {
    let pki = TestPki::new().expect("test CA");
    let nats = server(&pki, false);
    let (code, stderr) = topology(&nats, &[]);
    assert_ne!(code, Some(0), "connected without the CA");
    assert!(
        stderr.contains("invalid peer certificate"),
        "unclear error: {stderr}"
    );
    let ca = pki.ca().display().to_string();
    let (code, stderr) = topology(&nats, &["--nats-tls-ca", &ca]);
    assert_eq!(code, Some(0), "{stderr}");
    let client = nats
        .credentials(&Role::Topology)
        .options()
        .add_root_certificates(pki.ca())
        .require_tls(true)
        .connect(nats.server.url())
        .await
        .expect("connect over TLS");
    jetstream::new(client)
        .get_stream("MODERATION")
        .await
        .expect("the topology was applied over TLS");
}

/// A server that verifies clients refuses one without a certificate and accepts the
/// launcher's `--nats-tls-cert`/`--nats-tls-key`; a wrong password is refused either way.
#[test]
fn mutual_tls_needs_the_client_certificate() {
    let pki = TestPki::new().expect("test CA");
    let nats = server(&pki, true);
    let ca = pki.ca().display().to_string();
    let (code, _) = topology(&nats, &["--nats-tls-ca", &ca]);
    assert_ne!(code, Some(0), "connected without a client certificate");
    let (cert, key) = pki.client();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let flags = [
        "--nats-tls-ca",
        &ca,
        "--nats-tls-cert",
        &cert,
        "--nats-tls-key",
        &key,
    ];
    let (code, stderr) = topology(&nats, &flags);
    assert_eq!(code, Some(0), "{stderr}");
    let url = nats.server.url();
    let mut args = vec!["topology", "--nats-url", &url, "--nats-user", "topology"];
    args.extend(flags);
    let out = output_within(&args, &[("OFFPATH_NATS_PASSWORD", "wrong")], WITHIN);
    assert_ne!(out.status.code(), Some(0), "a wrong password was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(stderr.contains("authorization"), "unclear error: {stderr}");
}
