//! Who may decide: the reviewers file (TOML), name → SHA-256 of the reviewer's token.
//!
//! ```toml
//! [reviewers]
//! rita = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! ```
//!
//! `printf %s "$TOKEN" | sha256sum` gives the digest; the token itself is never stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::Digest;

/// One reviewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewer {
    /// Recorded with each decision.
    pub name: String,
    /// Lowercase hex SHA-256 of the token.
    pub token_sha256: String,
}

/// Every reviewer.
#[derive(Debug, Clone, Default)]
pub struct Reviewers {
    by_digest: BTreeMap<String, String>,
}

/// Why the reviewers file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("reviewers file {path}: {detail}")]
pub struct ReviewersError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub detail: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    reviewers: BTreeMap<String, String>,
}

impl Reviewers {
    /// These reviewers.
    pub fn new(reviewers: impl IntoIterator<Item = Reviewer>) -> Self {
        let by_digest = reviewers
            .into_iter()
            .map(|r| (r.token_sha256.to_ascii_lowercase(), r.name))
            .collect();
        Self { by_digest }
    }

    /// Reads the reviewers file: at least one reviewer, each digest 64 hex digits.
    pub fn load(path: &Path) -> Result<Self, ReviewersError> {
        let error = |detail: String| ReviewersError {
            path: path.to_path_buf(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let file: File = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
        if file.reviewers.is_empty() {
            return Err(error("no reviewer under [reviewers]".into()));
        }
        let mut reviewers = Vec::new();
        for (name, digest) in file.reviewers {
            let valid = digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit());
            if !valid || name.is_empty() {
                return Err(error(format!(
                    "reviewers.{name}: not the 64 hex digits of a SHA-256 digest"
                )));
            }
            reviewers.push(Reviewer {
                name,
                token_sha256: digest,
            });
        }
        Ok(Self::new(reviewers))
    }

    /// The reviewer whose token is `token`.
    pub(crate) fn who(&self, token: &str) -> Option<&str> {
        let digest = hex(&sha2::Sha256::digest(token.as_bytes()));
        self.by_digest.get(&digest).map(String::as_str)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token is recognised by its digest; another token, or the digest itself, is not.
    #[test]
    fn tokens_are_checked_by_digest() {
        let digest = hex(&sha2::Sha256::digest(b"s3cret"));
        let reviewers = Reviewers::new([Reviewer {
            name: "rita".into(),
            token_sha256: digest.clone(),
        }]);
        assert_eq!(reviewers.who("s3cret"), Some("rita"));
        assert_eq!(reviewers.who("s3cret "), None);
        assert_eq!(reviewers.who(&digest), None);
    }

    /// A bad file names what is wrong.
    #[test]
    fn bad_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("offpath-reviewers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for (text, expected) in [
            ("[reviewers]\n", "no reviewer"),
            ("[reviewers]\nrita = \"abc\"\n", "reviewers.rita"),
            ("reviewers = 3\n", "invalid type"),
        ] {
            let path = dir.join("reviewers.toml");
            std::fs::write(&path, text).expect("write");
            let err = Reviewers::load(&path).expect_err("refused").to_string();
            assert!(err.contains(expected), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
