//! Mentions (contract v1.4): the reference gateway has no user directory, so a mention is
//! the syntax `@<user id>` in the text: `@` at the start of a word, then the id's
//! characters (`A-Z a-z 0-9 _ . : - = + ~`), trailing punctuation not included. Each user
//! once, in order, at most [`MAX_MENTIONS`]. A platform's own transport puts the users its
//! client resolved instead (display-name mentions too).

use offpath_protocol::MAX_MENTIONS;

/// The users `text` mentions.
pub(crate) fn mentions(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        let Some(rest) = word.strip_prefix('@') else {
            continue;
        };
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_.:-=+~".contains(c)))
            .unwrap_or(rest.len());
        let user = rest[..end].trim_end_matches(['.', ':', '-', '=', '+', '~']);
        if user.is_empty() || user.len() > 64 || found.iter().any(|f| f == user) {
            continue;
        }
        found.push(user.to_string());
        if found.len() == MAX_MENTIONS {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn mentions_are_at_words_each_once_bounded() {
        assert_eq!(
            mentions("hi @bob, @carol: and @bob again"),
            ["bob", "carol"]
        );
        assert_eq!(
            mentions("mail me at a@b.example or @ alone"),
            Vec::<String>::new()
        );
        assert_eq!(mentions("(@dave) @eve."), ["eve"]);
        let flood: String = (0..500).map(|i| format!("@u{i} ")).collect();
        assert_eq!(mentions(&flood).len(), offpath_protocol::MAX_MENTIONS);
    }
}
