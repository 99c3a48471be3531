//! Errors as one line for the operator.

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
