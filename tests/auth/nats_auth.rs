//! NATS authorization: what each role's credentials may and may not do on a real
//! nats-server started with the generated `authorization` block. Each attack is the one an
//! outside probe made on an open server (issue 13): on `main` every one of them succeeded,
//! because every client was anonymous and unrestricted.
//!
//! This file is two modules of the `auth` test binary: `nats_auth` runs it against the
//! server found first (the bootstrap's 2.15), `nats_auth_oldest::nats_auth` (`#[path]`
//! includes it) against Debian 12's 2.9.10, the oldest supported version ([`builder`]).

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use async_nats::{Client, Event};
use offpath_harness::NatsServer;
use offpath_harness::secure::{self, SecuredNats};
use offpath_protocol::permissions::{Role, transport_consumer, transport_filter};
use offpath_protocol::subject::{MODERATION_STREAM, MODERATOR_CONSUMER, VERDICTS_STREAM};
use offpath_protocol::topology::{self, TopologyConfig};
use tokio::sync::mpsc;

/// How long a refused JetStream API request is waited for (the server drops it).
const REFUSED_WAIT: Duration = Duration::from_millis(1500);

fn acme() -> Role {
    Role::Transport {
        tenant: "acme".into(),
        instance: Some("gw1".into()),
    }
}

/// globex's one gateway `gw2`, pinned too (`offpath nats-auth --transport globex=gw2`).
fn globex() -> Role {
    Role::Transport {
        tenant: "globex".into(),
        instance: Some("gw2".into()),
    }
}

/// The nats-server of this module: Debian's 2.9.10 when it is `nats_auth_oldest::nats_auth`.
fn builder() -> offpath_harness::nats::Builder {
    let builder = NatsServer::builder();
    if !module_path!().contains("::nats_auth_oldest::") {
        return builder;
    }
    let oldest =
        offpath_harness::find_project_tool("oldest/bin/nats-server").unwrap_or_else(|| {
            panic!("no .tools/oldest/bin/nats-server: run `scripts/bootstrap --oldest-nats`")
        });
    builder.binary(oldest)
}

/// A secured server with the topology in place (made by the topology role).
async fn secured() -> SecuredNats {
    secured_with(&[
        Role::Topology,
        Role::Moderator,
        Role::Reviewer,
        acme(),
        globex(),
    ])
    .await
}

async fn secured_with(roles: &[Role]) -> SecuredNats {
    let nats = secure::start(builder(), roles)
        .unwrap_or_else(|err| panic!("cannot start nats-server: {err}"));
    let admin = nats
        .credentials(&Role::Topology)
        .connect(&nats.server.url())
        .await
        .expect("topology connects");
    topology::apply(&jetstream::new(admin), &TopologyConfig::default())
        .await
        .expect("the topology role creates the streams");
    nats
}

/// Connects as `role`; the server's permission errors arrive on the receiver.
async fn connect_as(nats: &SecuredNats, role: &Role) -> (Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = nats
        .credentials(role)
        .options()
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(err) = event {
                    let _ = tx.send(err.to_string());
                }
            }
        })
        .connect(nats.server.url())
        .await
        .expect("connects with its credentials");
    (client, rx)
}

/// The next permissions violation the server reported, within a few seconds.
async fn violation(errors: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .expect("the server reports a permissions violation")
        .expect("error channel open")
}

fn js_short(client: &Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(REFUSED_WAIT)
        .build(client.clone())
}

/// Connecting without credentials, or with a wrong password, fails: no anonymous user.
#[tokio::test]
async fn without_credentials_nothing_connects() {
    let nats = secured().await;
    let anonymous = async_nats::connect(nats.server.url()).await;
    assert!(anonymous.is_err(), "an anonymous client connected");
    let mut wrong = nats.credentials(&acme()).clone();
    wrong.password.push('x');
    assert!(wrong.connect(&nats.server.url()).await.is_err());
}

/// With acme's transport credentials, forging a verdict is refused and nothing reaches
/// the VERDICTS stream (the audit trail holds no forgery).
#[tokio::test]
async fn transport_cannot_publish_a_verdict() {
    let nats = secured().await;
    let (client, mut errors) = connect_as(&nats, &acme()).await;
    client
        .publish("offpath.verdict.acme.lobby", "{\"forged\":true}".into())
        .await
        .expect("queued");
    client.flush().await.expect("flush");
    assert!(
        violation(&mut errors)
            .await
            .contains("offpath.verdict.acme.lobby")
    );
    // Nor through a moderator: `offpath.classify` names its own reply subject, and a
    // moderator answering on `offpath.verdict.…` would publish with its rights.
    client
        .publish_with_reply(
            "offpath.classify",
            "offpath.verdict.globex.lobby",
            "{}".into(),
        )
        .await
        .expect("queued");
    client.flush().await.expect("flush");
    assert!(violation(&mut errors).await.contains("offpath.classify"));
    let (admin, _) = connect_as(&nats, &Role::Topology).await;
    let mut stream = jetstream::new(admin)
        .get_stream(VERDICTS_STREAM)
        .await
        .expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 0);
}

/// With acme's transport credentials, reading globex's requests or verdicts, or the shared
/// `_INBOX.>` (the moderators' pull replies: every tenant's text), is refused.
#[tokio::test]
async fn transport_cannot_read_another_tenant() {
    let nats = secured().await;
    let (client, mut errors) = connect_as(&nats, &acme()).await;
    for subject in [
        "offpath.req.globex",
        "offpath.req.>",
        "offpath.verdict.globex.*",
        "_INBOX.>",
    ] {
        let _subscription = client.subscribe(subject).await.expect("sent");
        client.flush().await.expect("flush");
        let error = violation(&mut errors).await;
        assert!(error.contains(subject), "{subject}: {error}");
    }
}

/// With acme's transport credentials, a consumer of globex's verdicts cannot be created,
/// nor can globex's own consumer be read.
#[tokio::test]
async fn transport_cannot_consume_another_tenants_verdicts() {
    let nats = secured().await;
    let (client, _errors) = connect_as(&nats, &acme()).await;
    let js = js_short(&client);
    let stream = js
        .get_stream(VERDICTS_STREAM)
        .await
        .expect("stream info is allowed");
    let spy = pull::Config {
        durable_name: Some(transport_consumer("acme", "gw1")),
        filter_subject: transport_filter("globex"),
        ..Default::default()
    };
    assert!(
        stream.create_consumer(spy).await.is_err(),
        "a globex filter was accepted"
    );
    // The permitted subject (acme's filter) with globex's filter in the body, as the one
    // filter or as the 2.10+ list: the server refuses a body that differs from the subject.
    for key in ["filter_subject", "filter_subjects"] {
        let filter = transport_filter("globex");
        let value = match key {
            "filter_subject" => serde_json::json!(filter),
            _ => serde_json::json!([filter]),
        };
        let answer = create_as_acme(&client, key, value).await;
        assert!(answer.get("error").is_some(), "{key} accepted: {answer}");
    }
    let (globex_client, _) = connect_as(&nats, &globex()).await;
    let theirs = transport_consumer("globex", "gw2");
    let own = pull::Config {
        durable_name: Some(theirs.clone()),
        filter_subject: transport_filter("globex"),
        ..Default::default()
    };
    let globex_js = js_short(&globex_client);
    let globex_stream = globex_js.get_stream(VERDICTS_STREAM).await.expect("stream");
    globex_stream
        .create_consumer(own)
        .await
        .expect("globex's own consumer");
    assert!(
        stream.consumer_info(&theirs).await.is_err(),
        "acme read globex's consumer"
    );
    // Its own consumer, of its own tenant: allowed.
    let own = pull::Config {
        durable_name: Some(transport_consumer("acme", "gw1")),
        filter_subject: transport_filter("acme"),
        ..Default::default()
    };
    stream.create_consumer(own).await.expect("its own consumer");
}

/// With acme's transport credentials, deleting a stream or the moderators' consumer is
/// refused, and both are still there afterwards.
#[tokio::test]
async fn transport_cannot_delete_streams_or_consumers() {
    let nats = secured().await;
    let (client, _errors) = connect_as(&nats, &acme()).await;
    let js = js_short(&client);
    assert!(js.delete_stream(VERDICTS_STREAM).await.is_err());
    assert!(
        js.delete_consumer_from_stream(MODERATOR_CONSUMER, MODERATION_STREAM)
            .await
            .is_err()
    );
    let (admin, _) = connect_as(&nats, &Role::Topology).await;
    let admin = jetstream::new(admin);
    admin
        .get_stream(VERDICTS_STREAM)
        .await
        .expect("VERDICTS still there");
    let moderation = admin
        .get_stream(MODERATION_STREAM)
        .await
        .expect("MODERATION");
    moderation
        .consumer_info(MODERATOR_CONSUMER)
        .await
        .expect("consumer still there");
}

/// A raw consumer-create request on the subject acme may use (its own consumer, its own
/// filter) whose body sets `key` to `value`; the server's JSON answer.
async fn create_as_acme(client: &Client, key: &str, value: serde_json::Value) -> serde_json::Value {
    let name = transport_consumer("acme", "gw1");
    let subject = format!(
        "$JS.API.CONSUMER.CREATE.{VERDICTS_STREAM}.{name}.{}",
        transport_filter("acme")
    );
    let mut config = serde_json::json!({"durable_name": name, "ack_policy": "explicit"});
    config[key] = value;
    let body = serde_json::json!({"stream_name": VERDICTS_STREAM, "config": config});
    let answer = client
        .request(subject, body.to_string().into())
        .await
        .expect("the server answers");
    serde_json::from_slice(&answer.payload).expect("JSON")
}

/// The moderator's credentials cannot manage streams either; its own work is allowed:
/// publishing a verdict into VERDICTS.
#[tokio::test]
async fn moderator_publishes_verdicts_but_cannot_delete() {
    let nats = secured().await;
    let (client, _errors) = connect_as(&nats, &Role::Moderator).await;
    let js = js_short(&client);
    assert!(js.delete_stream(MODERATION_STREAM).await.is_err());
    js.publish("offpath.verdict.acme.lobby", "{}".into())
        .await
        .expect("sent")
        .await
        .expect("stored");
}

/// A tenant's shared transport user (not pinned to an instance, allowed only when its
/// tenant is the deployment's only one) still creates only consumers of its own tenant's
/// verdicts, and publishes only its own tenant's requests.
#[tokio::test]
async fn shared_tenant_user_is_confined_to_its_tenant() {
    let shared = Role::Transport {
        tenant: "globex".into(),
        instance: None,
    };
    let nats = secured_with(&[Role::Topology, shared.clone()]).await;
    let (client, mut errors) = connect_as(&nats, &shared).await;
    let stream = js_short(&client)
        .get_stream(VERDICTS_STREAM)
        .await
        .expect("stream info is allowed");
    let spy = pull::Config {
        durable_name: Some(transport_consumer("acme", "gw1")),
        filter_subject: transport_filter("acme"),
        ..Default::default()
    };
    assert!(
        stream.create_consumer(spy).await.is_err(),
        "an acme filter was accepted"
    );
    client
        .publish("offpath.req.acme", "{}".into())
        .await
        .expect("queued");
    client.flush().await.expect("flush");
    // The refused consumer create was reported first.
    while !violation(&mut errors).await.contains("offpath.req.acme") {}
}

/// The policy bucket: the topology user writes it (`offpath policy push`), a moderator
/// reads the key's last value and subscribes to its changes, but can neither write it nor
/// create a consumer on it (a consumer's delivery subject is the creator's to choose); a
/// transport cannot read it.
#[tokio::test]
async fn moderators_read_the_policy_bucket_only_topology_writes_it() {
    use futures::StreamExt;
    use offpath_protocol::subject::{POLICY_BUCKET, POLICY_KEY};
    let nats = secured().await;
    let (admin, _) = connect_as(&nats, &Role::Topology).await;
    let admin_store = jetstream::new(admin)
        .get_key_value(POLICY_BUCKET)
        .await
        .expect("offpath topology made the bucket");
    admin_store
        .put(POLICY_KEY, "default = \"a\"".into())
        .await
        .expect("the topology user writes policies");

    let (moderator, mut errors) = connect_as(&nats, &Role::Moderator).await;
    let mut changes = moderator
        .subscribe(format!("$KV.{POLICY_BUCKET}.{POLICY_KEY}"))
        .await
        .expect("subscribe");
    let store = js_short(&moderator)
        .get_key_value(POLICY_BUCKET)
        .await
        .expect("a moderator opens the bucket");
    let value = store
        .get(POLICY_KEY)
        .await
        .expect("direct get")
        .expect("a value");
    assert_eq!(&value[..], b"default = \"a\"");
    admin_store
        .put(POLICY_KEY, "default = \"b\"".into())
        .await
        .expect("put");
    let change = tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .expect("the change arrives")
        .expect("subscription open");
    assert_eq!(&change.payload[..], b"default = \"b\"");

    assert!(
        store
            .put(POLICY_KEY, "default = \"c\"".into())
            .await
            .is_err(),
        "a moderator wrote the policies"
    );
    while !violation(&mut errors).await.contains(POLICY_BUCKET) {}
    assert!(
        store.watch(POLICY_KEY).await.is_err(),
        "a moderator created a consumer on the policy bucket"
    );

    let (transport, _) = connect_as(&nats, &acme()).await;
    assert!(
        js_short(&transport)
            .get_key_value(POLICY_BUCKET)
            .await
            .is_err(),
        "a transport read the policies"
    );
}

/// The interactive lane: a transport publishes its own tenant's requests there (stored in
/// `MODERATION_INTERACTIVE`), never another tenant's.
#[tokio::test]
async fn transport_publishes_on_its_own_interactive_lane_only() {
    let nats = secured().await;
    let (client, mut errors) = connect_as(&nats, &acme()).await;
    js_short(&client)
        .publish("offpath.req.acme.interactive", "{}".into())
        .await
        .expect("sent")
        .await
        .expect("stored in the interactive lane");
    client
        .publish("offpath.req.globex.interactive", "{}".into())
        .await
        .expect("queued");
    client.flush().await.expect("flush");
    while !violation(&mut errors)
        .await
        .contains("offpath.req.globex.interactive")
    {}
}

/// The review console's user: `offpath review` logged in as `reviewer` reads the queue a
/// moderator filled and publishes a decision (a human verdict and an audit entry); the same
/// credentials cannot publish a request, and a transport cannot read the queue.
#[tokio::test]
async fn the_reviewer_reads_the_queue_and_publishes_decisions_only() {
    use offpath_protocol::{Action, ReviewItem, ReviewKind, encode};
    let nats = secured().await;
    let (moderator, _) = connect_as(&nats, &Role::Moderator).await;
    let verdict = offpath_protocol::Verdict {
        action: Action::Flag,
        text_sha256: Some(offpath_protocol::text_sha256("you idiot")),
        ..offpath_harness::verdicts::sample("acme-1", Action::Flag, 0.5)
    };
    let item = ReviewItem::new(ReviewKind::Flag, &verdict, "you idiot", 1);
    jetstream::new(moderator)
        .publish(item.subject(), encode(&item).into())
        .await
        .expect("a moderator may queue an item")
        .await
        .expect("REVIEW stores it");

    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("password");
    std::fs::write(&password, &nats.credentials(&Role::Reviewer).password).expect("write");
    let reviewers = dir.path().join("reviewers.toml");
    let token = "tok";
    let digest = offpath_protocol::text_sha256(token);
    std::fs::write(&reviewers, format!("[reviewers]\nrita = \"{digest}\"\n")).expect("write");
    let addr = offpath_harness::process::concrete_addr(([127, 0, 0, 1], 0).into()).expect("port");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_offpath"));
    command
        .args([
            "review",
            "--nats-url",
            &nats.server.url(),
            "--nats-user",
            "reviewer",
        ])
        .arg(format!("--nats-password-file={}", password.display()))
        .arg(format!("--listen-addr={addr}"))
        .arg(format!("--reviewers={}", reviewers.display()))
        .env("OFFPATH_LOG", "warn");
    let mut console = offpath_harness::Proc::start("review", command, addr).expect("spawn");
    console
        .wait_ready(Duration::from_secs(30))
        .await
        .expect("ready");
    let auth = format!("Authorization: Bearer {token}");
    let call = |method: &'static str, path: &'static str, body: String| {
        let auth = auth.clone();
        async move {
            offpath_harness::http::send(
                addr,
                method,
                path,
                &[&auth, "Content-Type: application/json"],
                &body,
            )
            .await
            .expect("the console answers")
        }
    };
    let mut body = String::new();
    for _ in 0..100 {
        body = call("GET", "/api/queue", String::new()).await.1;
        if body.contains("acme-1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        body.contains("acme-1"),
        "the queue, read as reviewer: {body}"
    );
    let decide = format!(
        "{{\"key\": \"{}\", \"decision\": \"remove\"}}",
        item.dedup_key()
    );
    let (status, answer) = call("POST", "/api/decide", decide).await;
    assert_eq!(
        status, 200,
        "verdict and audit entry published as reviewer: {answer}"
    );

    let (reviewer, mut errors) = connect_as(&nats, &Role::Reviewer).await;
    reviewer
        .publish("offpath.req.acme", "{}".into())
        .await
        .expect("queued");
    reviewer.flush().await.expect("flush");
    assert!(violation(&mut errors).await.contains("offpath.req.acme"));
    // A transport may look the stream up (its start-up checks the topology), never read it.
    let (transport, _) = connect_as(&nats, &acme()).await;
    let review = js_short(&transport)
        .get_stream("REVIEW")
        .await
        .expect("stream info");
    assert!(
        review.get_raw_message(1).await.is_err(),
        "a transport read an item of the review queue"
    );
    let consumer = review
        .create_consumer(pull::Config {
            durable_name: Some("peek".into()),
            ..Default::default()
        })
        .await;
    assert!(consumer.is_err(), "a transport made a consumer on REVIEW");
}

/// Issue 26: a shared `transport-globex` user re-pointed pinned `transport-acme-gw1`'s
/// consumer to globex's filter and pulled and acked acme's verdicts by name (on 2.9.10 as
/// on 2.15). A shared tenant user beside another tenant is now refused by the generator,
/// and globex's pinned gateway can neither update, pull from, read nor ack acme's consumer.
#[tokio::test]
async fn another_tenant_cannot_touch_a_verdict_consumer() {
    use offpath_protocol::permissions::{Password, PermissionsError, authorization_block};
    let shared = Role::Transport {
        tenant: "globex".into(),
        instance: None,
    };
    let mixed = authorization_block(&[(shared, Password::FromEnv), (acme(), Password::FromEnv)]);
    assert!(
        matches!(
            mixed,
            Err(PermissionsError::SharedBesideOtherTenants { .. })
        ),
        "{mixed:?}"
    );

    let nats = secured().await;
    let (acme_client, _) = connect_as(&nats, &acme()).await;
    let acme_stream = js_short(&acme_client)
        .get_stream(VERDICTS_STREAM)
        .await
        .unwrap();
    let theirs = transport_consumer("acme", "gw1");
    acme_stream
        .create_consumer(pull::Config {
            durable_name: Some(theirs.clone()),
            filter_subject: transport_filter("acme"),
            ..Default::default()
        })
        .await
        .expect("acme's own consumer");
    let (moderator, _) = connect_as(&nats, &Role::Moderator).await;
    js_short(&moderator)
        .publish("offpath.verdict.acme.lobby", "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let (globex_client, mut errors) = connect_as(&nats, &globex()).await;
    let hijack = serde_json::json!({"stream_name": VERDICTS_STREAM, "config": {
        "durable_name": theirs, "ack_policy": "explicit",
        "filter_subject": transport_filter("globex")}});
    for (subject, body) in [
        (
            format!(
                "$JS.API.CONSUMER.CREATE.{VERDICTS_STREAM}.{theirs}.{}",
                transport_filter("globex")
            ),
            hijack.to_string(),
        ),
        (
            format!("$JS.API.CONSUMER.MSG.NEXT.{VERDICTS_STREAM}.{theirs}"),
            r#"{"batch":10,"no_wait":true}"#.to_string(),
        ),
        (
            format!("$JS.API.CONSUMER.INFO.{VERDICTS_STREAM}.{theirs}"),
            String::new(),
        ),
        (
            format!("$JS.ACK.{VERDICTS_STREAM}.{theirs}.1.1.1.0.0"),
            String::new(),
        ),
    ] {
        globex_client
            .publish(subject.clone(), body.into())
            .await
            .unwrap();
        globex_client.flush().await.unwrap();
        let refused = violation(&mut errors).await;
        assert!(refused.contains(&subject), "{subject}: {refused}");
    }
    let info = acme_stream
        .consumer_info(&theirs)
        .await
        .expect("acme's consumer");
    assert_eq!(
        info.config.filter_subject,
        transport_filter("acme"),
        "re-pointed"
    );
    assert_eq!(info.num_pending, 1, "acme's verdict was taken");
}

/// acme's integration (`offpath nats-auth --integration acme`): it may call
/// `offpath.classify`; it may not publish requests (acme's included: the gateway's subject,
/// whose verdicts the gateway applies) or verdicts, read verdicts, requests, the shared
/// `_INBOX.>` or another role's inbox, nor use the JetStream API.
#[tokio::test]
async fn an_integration_is_confined_to_its_tenant() {
    let integration = Role::Integration {
        tenant: "acme".into(),
    };
    let nats = secured_with(&[
        Role::Topology,
        Role::Moderator,
        acme(),
        globex(),
        integration.clone(),
    ])
    .await;
    let (client, mut errors) = connect_as(&nats, &integration).await;
    client
        .publish("offpath.classify", "{}".into())
        .await
        .expect("queued");
    client.flush().await.expect("flush");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), errors.recv())
            .await
            .is_err(),
        "a classify call was refused"
    );
    for subject in [
        "offpath.req.acme",
        "offpath.req.acme.interactive",
        "offpath.req.globex",
        "offpath.verdict.acme.lobby",
        "offpath.dlq.acme",
    ] {
        client.publish(subject, "{}".into()).await.expect("queued");
        client.flush().await.expect("flush");
        let error = violation(&mut errors).await;
        assert!(error.contains(subject), "{subject}: {error}");
    }
    for subject in [
        "offpath.verdict.acme.*",
        "offpath.req.acme",
        "_INBOX.>",
        "_INBOX_transport_acme.>",
    ] {
        let _subscription = client.subscribe(subject).await.expect("sent");
        client.flush().await.expect("flush");
        let error = violation(&mut errors).await;
        assert!(error.contains(subject), "{subject}: {error}");
    }
    let js = js_short(&client);
    assert!(js.get_stream(VERDICTS_STREAM).await.is_err());
    assert!(violation(&mut errors).await.contains("$JS.API.STREAM.INFO"));
}
