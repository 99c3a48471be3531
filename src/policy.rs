//! `offpath policy check FILE` validates a policy file against the models a moderator
//! would load, before any moderator is given it; `offpath policy push FILE` validates it
//! the same way, signs it with the operator's key and puts it in the fleet's policy bucket,
//! which every moderator watches; `offpath policy keygen FILE` makes that key;
//! `offpath policy clear` sends the fleet back to its files. Moderators take only values
//! signed by a key of their `--policy-signers` ([`offpath_protocol::policy_signature`]):
//! the key's subject can be written by any NATS role through a reply subject.

use std::path::PathBuf;

use anyhow::Context;
use offpath_classifier::Manifest;
use offpath_moderator::PolicySet;
use offpath_protocol::permissions::Role;
use offpath_protocol::policy_signature::SigningKey;
use offpath_protocol::subject::{POLICY_BUCKET, POLICY_KEY};
use offpath_protocol::topology;

use offpath_ops::cli::Usage;

use crate::cli::policy::{CheckArgs, PolicyAction, PolicyCommand, SignAndSend};

/// Runs `offpath policy …`.
pub(crate) async fn run(command: &PolicyCommand) -> anyhow::Result<()> {
    match &command.action {
        PolicyAction::Check(args) => check(args).map(|_| ()),
        PolicyAction::Push(args) => {
            let key = read_signing_key(&args.send.signing_key)?;
            let text = check(&args.check)?;
            let revision = put(&args.send, &key, &text).await?;
            println!(
                "{}: pushed to {POLICY_BUCKET}/{POLICY_KEY} (revision {revision}, signed by {}); \
                 moderators log \"policies reloaded\" and count \
                 offpath_moderator_policy_reloads_total{{source=\"bucket\"}}",
                args.check.file.display(),
                key.public_key()
            );
            Ok(())
        }
        PolicyAction::Clear(args) => {
            let key = read_signing_key(&args.send.signing_key)?;
            let revision = put(&args.send, &key, "").await?;
            println!(
                "cleared {POLICY_BUCKET}/{POLICY_KEY} (revision {revision}): moderators go back \
                 to their --policies files"
            );
            Ok(())
        }
        PolicyAction::Keygen(args) => {
            let key = SigningKey::generate();
            write_new_private(&args.file, &key.seed())?;
            println!("{}", key.public_key());
            eprintln!(
                "seed written to {} (0600); give moderators --policy-signers={}",
                args.file.display(),
                key.public_key()
            );
            Ok(())
        }
    }
}

/// Reads a signing key file; a missing or bad one is a usage error.
fn read_signing_key(path: &std::path::Path) -> anyhow::Result<SigningKey> {
    let seed = std::fs::read_to_string(path)
        .map_err(|err| Usage(format!("--signing-key {}: {err}", path.display())))?;
    SigningKey::from_seed(&seed)
        .map_err(|err| Usage(format!("--signing-key {}: {err}", path.display())).into())
}

/// Writes `text` to a new file readable by its owner only (refused when it exists).
fn write_new_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| Usage(format!("{}: {err}", path.display())))?;
    writeln!(file, "{text}").with_context(|| format!("writing {}", path.display()))
}

/// The policy signing key of a local stack (`offpath up`): `<dir>/policy-signing.nk`,
/// made on first use. Its public key is what the stack's moderators trust.
pub(crate) fn local_signing_key(dir: &std::path::Path) -> anyhow::Result<(PathBuf, SigningKey)> {
    let path = dir.join("policy-signing.nk");
    if !path.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_new_private(&path, &SigningKey::generate().seed())?;
    }
    let key = read_signing_key(&path)?;
    Ok((path, key))
}

/// Signs `text` and puts it in the bucket (created when missing); its revision. It is
/// signed now, or just after the value in the bucket when that one claims a later time (a
/// host with a slower clock pushed before): moderators refuse a value signed before the
/// newest they have seen, so a push must never look older than the last one.
async fn put(send: &SignAndSend, key: &SigningKey, text: &str) -> anyhow::Result<u64> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let nats = &send.nats;
    let client = crate::services::connect(
        &nats.nats_url,
        &nats.auth,
        "offpath-policy",
        &Role::Topology,
    )
    .await?;
    let js = async_nats::jetstream::new(client.clone());
    topology::ensure_policy_bucket(&js, &nats.streams.topology()).await?;
    let store = js
        .get_key_value(POLICY_BUCKET)
        .await
        .with_context(|| format!("opening the key-value bucket {POLICY_BUCKET}"))?;
    let last_ms = match store.get(POLICY_KEY).await {
        Ok(Some(value)) => offpath_protocol::policy_signature::signed_at(&value),
        _ => None,
    };
    let signed_at_ms = match last_ms {
        Some(last) if last >= now_ms => {
            if last > now_ms + 60_000 {
                eprintln!(
                    "warning: the value in {POLICY_BUCKET} claims to be signed {} s in the \
                     future (a host with a fast clock pushed it); this push is signed after it",
                    (last - now_ms) / 1000
                );
            }
            last + 1
        }
        _ => now_ms,
    };
    let value = key.sign(text, signed_at_ms);
    let revision = store
        .put(POLICY_KEY, value.into())
        .await
        .with_context(|| format!("putting {POLICY_KEY} into {POLICY_BUCKET}"))?;
    client
        .flush()
        .await
        .context("flushing the NATS connection")?;
    Ok(revision)
}

/// Checks the file; its text when it is valid.
fn check(args: &CheckArgs) -> anyhow::Result<String> {
    let manifests = args
        .models
        .iter()
        .map(|dir| {
            let dir = offpath_local::locate::resolve_in_checkout(dir);
            Manifest::load(&dir).map_err(|err| Usage(format!("--model: {err}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let text = PolicySet::read(&args.file).map_err(|err| Usage(err.to_string()))?;
    let set = match PolicySet::parse(&text, &manifests) {
        Ok(set) => set,
        Err(problems) => {
            let path = args.file.display();
            for problem in &problems {
                println!("{path}: {problem}");
            }
            let count = problems.len();
            return Err(Usage(format!(
                "policy file {path}: {count} problem{} (listed above)",
                if count == 1 { "" } else { "s" }
            ))
            .into());
        }
    };
    for rules in set.policies() {
        println!("policy {} version {}", rules.name, rules.version);
    }
    let tenants: Vec<&str> = set.tenants().collect();
    println!(
        "{}: ok ({} policies; tenants with rules of their own: {})",
        args.file.display(),
        set.policies().count(),
        if tenants.is_empty() {
            "none".to_string()
        } else {
            tenants.join(", ")
        }
    );
    std::io::Write::flush(&mut std::io::stdout()).context("stdout")?;
    // Read again for a push: what was checked is what is sent (the size was bounded).
    std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))
}
