//! What an operator sees of every offpath command-line program (`offpath`,
//! `offpath-bench`): the log flags and their `OFFPATH_LOG*` variables, logs on stderr
//! (coloured only at a terminal), a fatal error as one line, and the exit status (64 for a
//! configuration mistake, 1 for any other failure).

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

/// EX_USAGE from sysexits.h: the configuration was wrong.
pub const EX_USAGE: u8 = 64;

/// Logging options.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Log filter in `tracing` syntax, e.g. `info,offpath=debug`.
    #[arg(
        long,
        env = "OFFPATH_LOG",
        default_value = "info,async_nats=warn",
        global = true
    )]
    pub log_filter: String,
    /// Write logs as JSON lines instead of text.
    #[arg(long, env = "OFFPATH_LOG_JSON", global = true)]
    pub log_json: bool,
}

/// A configuration error: the process exits with status 64 (EX_USAGE).
#[derive(Debug)]
pub struct Usage(pub String);

impl Usage {
    /// Every problem a settings check found, each named, on the one line a fatal error
    /// gets: `2 problems: first; second`.
    pub fn problems(problems: Vec<String>) -> Self {
        match problems.len() {
            1 => Self(problems.into_iter().collect()),
            n => Self(format!("{n} problems: {}", problems.join("; "))),
        }
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The program's `main`: parses the command line (`--help` and `--version` exit 0, a
/// mistake 64), installs logging from the flags `log` picks out, runs `run` on a tokio
/// runtime, and prints a failure as one line prefixed with `program` (status 64 for a
/// [`Usage`] error, else 1).
pub fn main<C, F>(
    program: &str,
    log: impl FnOnce(&C) -> &LogArgs,
    run: impl FnOnce(C) -> F,
) -> ExitCode
where
    C: clap::Parser,
    F: Future<Output = anyhow::Result<()>>,
{
    let cli = match C::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version print to stdout and succeed.
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing(log(&cli));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            report(program, &format!("cannot start the async runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(program, &one_line(&err));
            if err.is::<Usage>() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Prints a fatal error; a closed stderr is ignored rather than turned into a panic.
fn report(program: &str, message: &str) {
    let _ = writeln!(std::io::stderr(), "{program}: {message}");
}

/// Installs the global `tracing` subscriber.
pub fn init_tracing(args: &LogArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A closed stderr must not crash the service: tracing-subscriber would report the
    // failed write with `eprintln!`, which panics on a closed stderr.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_stderr())
        .log_internal_errors(false);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Colour only for a person at a terminal: never into a pipe or file (log collectors,
/// tests), and never when `NO_COLOR` is set to anything but the empty string
/// (<https://no-color.org>).
fn colour_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `err` and its causes on one line, `outer: cause: root`, each cause once. Many errors
/// (async-nats', `thiserror` ones written as `"…: {source}"`) put their source's text in
/// their own message *and* return it from `source()`: anyhow's `{:#}` then prints it twice.
/// A cause whose text the line already holds adds nothing and is left out. async-nats also
/// wraps an error in one of the same kind and text, printing `text: text` by itself: such
/// an exact repetition of a cause is collapsed too.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    let texts: Vec<String> = err.chain().map(ToString::to_string).collect();
    for text in &texts {
        if line.contains(text.as_str()) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    for text in texts.iter().rev().filter(|t| !t.is_empty()) {
        let twice = format!("{text}: {text}");
        while line.contains(&twice) {
            line = line.replacen(&twice, text, 1);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that prints its source as part of its own message, as async-nats' do.
    #[derive(Debug)]
    struct Wrapping(std::io::Error);

    impl std::fmt::Display for Wrapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "IO error: {}", self.0)
        }
    }

    impl std::error::Error for Wrapping {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// A source already in its parent's message is not printed again; distinct contexts
    /// are all kept, outermost first.
    #[test]
    fn each_cause_once() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = anyhow::Error::new(Wrapping(refused)).context("connecting to NATS at x");
        assert_eq!(
            format!("{err:#}"),
            "connecting to NATS at x: IO error: refused: refused"
        );
        assert_eq!(one_line(&err), "connecting to NATS at x: IO error: refused");
        let plain = anyhow::anyhow!("root").context("middle").context("outer");
        assert_eq!(one_line(&plain), "outer: middle: root");
    }

    /// async-nats' shape: an error wrapping one of the same kind, printing `kind: source`.
    #[derive(Debug)]
    struct Nested(&'static str, Option<Box<Nested>>);

    impl std::fmt::Display for Nested {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match &self.1 {
                Some(source) => write!(f, "{}: {source}", self.0),
                None => f.write_str(self.0),
            }
        }
    }

    impl std::error::Error for Nested {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|s| s as _)
        }
    }

    /// An error that repeats its same-text source in its own message is printed once.
    #[test]
    fn a_repeated_cause_is_collapsed() {
        let inner = Nested("jetstream error: no (code 500)", None);
        let outer = Nested("jetstream error: no (code 500)", Some(Box::new(inner)));
        let err = anyhow::Error::new(outer).context("creating stream X");
        assert_eq!(
            one_line(&err),
            "creating stream X: jetstream error: no (code 500)"
        );
    }
}

/// A duration given in whole milliseconds on the command line and in the environment
/// (`--…-ms`, `OFFPATH_…_MS`): parsed once, so a service's code holds a [`Duration`] and
/// never converts a number of unknown unit. Shows itself as the number, so clap's
/// `default_value_t` and `--help` read as before.
///
/// [`Duration`]: std::time::Duration
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(std::time::Duration);

impl Millis {
    /// `ms` milliseconds.
    pub const fn new(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// The duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// Whole milliseconds (what the flag was given).
    pub fn ms(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl std::ops::Deref for Millis {
    type Target = std::time::Duration;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl From<Millis> for std::time::Duration {
    fn from(millis: Millis) -> Self {
        millis.0
    }
}

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.ms())
    }
}

impl std::str::FromStr for Millis {
    type Err = std::num::ParseIntError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(Self::new)
    }
}

#[cfg(test)]
mod millis_tests {
    use std::time::Duration;

    use super::Millis;

    #[test]
    fn millis_parse_show_and_refuse_as_numbers_of_milliseconds() {
        let parsed: Millis = "1500".parse().expect("a number");
        assert_eq!(parsed.get(), Duration::from_millis(1500));
        assert_eq!(parsed.to_string(), "1500");
        assert!("1.5s".parse::<Millis>().is_err());
        assert!("-1".parse::<Millis>().is_err());
    }
}
