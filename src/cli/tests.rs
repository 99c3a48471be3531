//! Parsing of the command line and its environment fallbacks.

use clap::CommandFactory;

use super::*;
use offpath_protocol::topology::Stream;

fn topology_urls(args: &[&str]) -> Vec<String> {
    let cli = Cli::try_parse_from(["offpath", "topology"].iter().chain(args)).expect("parses");
    match cli.command {
        Command::Topology(nats) => nats.nats_url,
        other => panic!("parsed as {other:?}"),
    }
}

/// Several NATS URLs are accepted comma-separated and as a repeated flag.
#[test]
fn nats_urls_comma_separated_or_repeated() {
    let both = ["nats://a:4222", "nats://b:4222"];
    assert_eq!(
        topology_urls(&["--nats-url", "nats://a:4222,nats://b:4222"]),
        both
    );
    assert_eq!(
        topology_urls(&["--nats-url", "nats://a:4222", "--nats-url", "nats://b:4222"]),
        both
    );
    let cli = Cli::try_parse_from(["offpath", "up", "--nats-url=nats://a:4222,nats://b:4222"])
        .expect("parses");
    let Command::Up(up) = cli.command else {
        panic!("not up")
    };
    assert_eq!(up.nats_url, both);
}

/// `--stream-max-bytes` and `--replicas` become the topology's settings.
#[test]
fn stream_flags_become_the_topology() {
    let cli = Cli::try_parse_from([
        "offpath",
        "up",
        "--replicas=3",
        "--stream-max-bytes=104857600",
    ])
    .expect("parses");
    let Command::Up(up) = cli.command else {
        panic!("not up")
    };
    let topology = up.streams.topology();
    assert_eq!(topology.replicas, 3);
    assert_eq!(topology.requests.max_bytes, 104_857_600);
    assert_eq!(topology.verdicts.max_bytes, 104_857_600);
    assert_eq!(topology.dlq.max_bytes, 104_857_600);
    assert!(Cli::try_parse_from(["offpath", "topology", "--stream-max-bytes=0"]).is_err());
}

/// Arguments without an `OFFPATH_…` variable, on purpose: clap's own `--help` and
/// `--version`, and the `help` subcommand's positional.
const WITHOUT_ENV: [&str; 2] = ["help", "version"];

/// Every flag of every subcommand has an `OFFPATH_…` environment fallback, and within one
/// subcommand (global flags included) no two flags share a variable.
#[test]
fn every_flag_has_its_own_variable() {
    let mut cli = Cli::command();
    cli.build();
    let mut missing = Vec::new();
    let mut shared = Vec::new();
    check_env(&cli, "offpath", &mut missing, &mut shared);
    assert!(missing.is_empty(), "flags without a variable: {missing:?}");
    assert!(shared.is_empty(), "variables used twice: {shared:?}");
}

fn check_env(
    command: &clap::Command,
    path: &str,
    missing: &mut Vec<String>,
    shared: &mut Vec<String>,
) {
    let mut seen = std::collections::HashMap::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.is_positional() || WITHOUT_ENV.contains(&id) {
            continue;
        }
        match arg.get_env().and_then(|env| env.to_str()) {
            Some(env) if env.starts_with("OFFPATH_") => {
                if let Some(other) = seen.insert(env.to_string(), id.to_string()) {
                    shared.push(format!("{path}: {env} for --{other} and --{id}"));
                }
            }
            _ => missing.push(format!("{path} --{id}")),
        }
    }
    for sub in command.get_subcommands() {
        check_env(sub, &format!("{path} {}", sub.get_name()), missing, shared);
    }
}

/// The variable of a flag of a subcommand (`path`, e.g. `["up"]`).
fn env_of(path: &[&str], id: &str) -> Option<String> {
    let mut command = Cli::command();
    command.build();
    let mut command = &command;
    for name in path {
        command = command.find_subcommand(name).expect("subcommand");
    }
    let arg = command.get_arguments().find(|a| a.get_id() == id)?;
    Some(arg.get_env()?.to_string_lossy().into_owned())
}

/// `--replicas` reads `OFFPATH_STREAM_REPLICAS` wherever it is accepted (as the README
/// says), and each service has its own metrics-address variable.
#[test]
fn documented_variables() {
    for path in [&["up"][..], &["moderator"], &["transport"], &["topology"]] {
        assert_eq!(
            env_of(path, "replicas").as_deref(),
            Some("OFFPATH_STREAM_REPLICAS"),
            "{path:?}"
        );
    }
    let env = |path: &[&str], id| env_of(path, id).unwrap_or_default();
    assert_eq!(
        env(&["moderator"], "metrics_addr"),
        "OFFPATH_MODERATOR_METRICS_ADDR"
    );
    assert_eq!(
        env(&["transport"], "metrics_addr"),
        "OFFPATH_TRANSPORT_METRICS_ADDR"
    );
    assert_eq!(
        env(&["up"], "moderator_metrics_addr"),
        "OFFPATH_MODERATOR_METRICS_ADDR"
    );
    assert_eq!(
        env(&["up"], "transport_metrics_addr"),
        "OFFPATH_TRANSPORT_METRICS_ADDR"
    );
    assert_eq!(env(&["up"], "moderator_arg"), "OFFPATH_MODERATOR_ARGS");
    assert_eq!(env(&["up"], "transport_arg"), "OFFPATH_TRANSPORT_ARGS");
}

/// Everything after `bench` reaches `offpath-bench` as it was typed, `--help` included.
#[test]
fn bench_arguments_pass_through() {
    let cli = Cli::try_parse_from(["offpath", "bench", "throughput", "--messages=5", "--help"])
        .expect("parses");
    let Command::Bench(bench) = cli.command else {
        panic!("not bench")
    };
    assert_eq!(bench.args, ["throughput", "--messages=5", "--help"]);
    let cli = Cli::try_parse_from(["offpath", "bench", "--help"]).expect("parses");
    let Command::Bench(bench) = cli.command else {
        panic!("not bench")
    };
    assert_eq!(bench.args, ["--help"]);
}

/// Pass-through values are split on whitespace (an environment variable holds one
/// string); commas stay inside a flag's value.
#[test]
fn pass_through_flags_split_on_whitespace() {
    let cli = Cli::try_parse_from([
        "offpath",
        "up",
        "--moderator-arg=--inference-threads=1  --model=a,b",
        "--moderator-arg=--max-batch=8",
        "--transport-arg=--room-policy=kids=hold:fail_closed,lobby=post",
    ])
    .expect("parses");
    let Command::Up(up) = cli.command else {
        panic!("not up")
    };
    assert_eq!(
        up.moderator_flags(),
        ["--inference-threads=1", "--model=a,b", "--max-batch=8"]
    );
    assert_eq!(
        up.transport_flags(),
        ["--room-policy=kids=hold:fail_closed,lobby=post"]
    );
    assert!(Cli::try_parse_from(["offpath", "up", "--replicas=6"]).is_err());
    assert!(Cli::try_parse_from(["offpath", "topology", "--replicas=0"]).is_err());
}

/// `--nats-cluster` is 1 (one local server) by default, reads `OFFPATH_NATS_CLUSTER`, and
/// is at most 5 nodes.
#[test]
fn nats_cluster_flag() {
    let up = |args: &[&str]| match Cli::try_parse_from(["offpath", "up"].iter().chain(args))
        .map(|cli| cli.command)
    {
        Ok(Command::Up(up)) => Ok(up.nats_cluster),
        Ok(other) => panic!("parsed as {other:?}"),
        Err(err) => Err(err),
    };
    assert_eq!(up(&[]).expect("parses"), 1);
    assert_eq!(up(&["--nats-cluster", "3"]).expect("parses"), 3);
    assert!(up(&["--nats-cluster=6"]).is_err());
    assert!(up(&["--nats-cluster=0"]).is_err());
    assert_eq!(
        env_of(&["up"], "nats_cluster").as_deref(),
        Some("OFFPATH_NATS_CLUSTER")
    );
}

fn nats_auth(args: &[&str]) -> NatsAuthArgs {
    let cli = Cli::try_parse_from(["offpath", "topology"].iter().chain(args)).expect("parses");
    match cli.command {
        Command::Topology(nats) => nats.auth,
        other => panic!("parsed as {other:?}"),
    }
}

fn usage_error(args: &[&str]) -> String {
    let err = nats_auth(args).check().expect_err("refused");
    assert!(err.is::<Usage>(), "not a usage error (exit 64): {err:#}");
    err.to_string()
}

/// Contradictory or incomplete NATS login flags are usage errors (exit 64) in one line, and
/// there is no flag for a password value (a child's command line is visible in `ps`).
#[test]
fn nats_login_flags_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("password");
    std::fs::write(&file, "s3cret\nignored\n").expect("write");
    let file = file.to_str().expect("UTF-8");
    let creds_and_user = usage_error(&["--nats-creds", file, "--nats-user", "u"]);
    assert!(creds_and_user.contains("give one"), "{creds_and_user}");
    assert!(usage_error(&["--nats-password-file", file]).contains("needs --nats-user"));
    assert!(usage_error(&["--nats-tls-cert", file]).contains("go together"));
    assert!(usage_error(&["--nats-tls-ca", "/nonexistent/ca.pem"]).contains("no such file"));
    if std::env::var_os(crate::nats_auth::PASSWORD_ENV).is_none() {
        assert!(usage_error(&["--nats-user", "u"]).contains("needs a password"));
    }
    let login = nats_auth(&["--nats-user", "u", "--nats-password-file", file])
        .check()
        .expect("accepted")
        .expect("a login");
    assert_eq!(login.0, "u");
    assert_eq!(login.1.0, "s3cret");
    assert_eq!(format!("{login:?}"), "(\"u\", <redacted>)");
    assert!(Cli::try_parse_from(["offpath", "topology", "--nats-password", "x"]).is_err());
}

/// `offpath nats-auth --integration acme` adds `integration-acme` (an API-only tenant needs
/// no transport) and names the flag in the header.
#[test]
fn nats_auth_adds_integration_users() {
    let block = |args: &[&str]| {
        let cli = Cli::try_parse_from(["offpath", "nats-auth"].iter().chain(args)).expect("parses");
        match cli.command {
            Command::NatsAuth(command) => crate::nats_auth::deployment_block(&command),
            other => panic!("parsed as {other:?}"),
        }
    };
    let text = block(&["--transport", "acme=gw1", "--integration", "acme"]).expect("a block");
    assert!(
        text.starts_with(
            "# Generated by `offpath nats-auth --transport acme=gw1 --integration acme`"
        )
    );
    assert!(text.contains("user: \"integration-acme\""), "{text}");
    assert!(
        text.contains("$OFFPATH_NATS_PASSWORD_INTEGRATION_ACME"),
        "{text}"
    );
    let alone = block(&["--integration", "forum"]).expect("an integration alone");
    assert!(
        alone.contains("publish: { allow: [\"offpath.classify\"] }"),
        "{alone}"
    );
    assert!(block(&["--integration", "a.b"]).is_err());
    assert!(block(&[]).is_err());
}

/// `--stream-max-bytes` bounds every stream, `REVIEW` and `AUDIT` included (issue 28: they
/// stayed at 1 GiB).
#[test]
fn stream_max_bytes_reaches_every_stream() {
    let cli = Cli::try_parse_from(["offpath", "topology", "--stream-max-bytes=100000000"])
        .expect("parses");
    let Command::Topology(nats) = cli.command else {
        panic!("parsed as {:?}", cli.command);
    };
    let topology = nats.streams.topology();
    for stream in Stream::ALL {
        let config = topology.stream(stream);
        let expected = if stream == Stream::Interactive {
            100_000_000 / 8
        } else {
            100_000_000
        };
        assert_eq!(config.max_bytes, expected, "{}", config.name);
    }
}
