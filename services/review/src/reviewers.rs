//! Who may decide: the reviewers file (TOML), name → SHA-256 of the reviewer's token, and
//! optionally the tenants whose queue the reviewer sees (every tenant's when absent).
//!
//! ```toml
//! [reviewers]
//! rita = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! sam = { token_sha256 = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752", tenants = ["acme"] }
//! ```
//!
//! `printf %s "$TOKEN" | sha256sum` gives the digest; the token itself is never stored, so
//! tokens must be random (at least 128 bits: `openssl rand -hex 32`), not passwords.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One reviewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewer {
    /// Recorded with each decision.
    pub name: String,
    /// Lowercase hex SHA-256 of the token.
    pub token_sha256: String,
    /// The tenants whose items the reviewer sees and decides; `None`: every tenant's.
    pub tenants: Option<Vec<String>>,
}

impl Reviewer {
    /// Whether the reviewer may see and decide `tenant`'s items.
    pub(crate) fn serves(&self, tenant: &str) -> bool {
        self.tenants
            .as_ref()
            .is_none_or(|tenants| tenants.iter().any(|t| t == tenant))
    }
}

/// Every reviewer.
#[derive(Debug, Clone, Default)]
pub struct Reviewers {
    by_digest: BTreeMap<String, Reviewer>,
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
    reviewers: BTreeMap<String, Entry>,
}

/// A reviewer's line: the digest alone (every tenant), or with the tenants.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Entry {
    Digest(String),
    Scoped {
        token_sha256: String,
        tenants: Vec<String>,
    },
}

impl Reviewers {
    /// These reviewers.
    pub fn new(reviewers: impl IntoIterator<Item = Reviewer>) -> Self {
        let by_digest = reviewers
            .into_iter()
            .map(|r| (r.token_sha256.to_ascii_lowercase(), r))
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
        for (name, entry) in file.reviewers {
            let (digest, tenants) = match entry {
                Entry::Digest(digest) => (digest, None),
                Entry::Scoped {
                    token_sha256,
                    tenants,
                } => (token_sha256, Some(tenants)),
            };
            let valid = digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit());
            if !valid || name.is_empty() {
                return Err(error(format!(
                    "reviewers.{name}: not the 64 hex digits of a SHA-256 digest"
                )));
            }
            let bad_tenant = tenants.as_ref().and_then(|t| {
                t.iter()
                    .find(|t| !offpath_protocol::subject::is_valid_token(t))
            });
            if let Some(tenant) = bad_tenant {
                return Err(error(format!(
                    "reviewers.{name}: {tenant:?} is not a tenant name"
                )));
            }
            if tenants.as_ref().is_some_and(Vec::is_empty) {
                return Err(error(format!(
                    "reviewers.{name}: an empty tenants list (leave it out for every tenant)"
                )));
            }
            reviewers.push(Reviewer {
                name,
                token_sha256: digest,
                tenants,
            });
        }
        Ok(Self::new(reviewers))
    }

    /// The reviewer whose token is `token`.
    pub(crate) fn who(&self, token: &str) -> Option<&Reviewer> {
        self.by_digest.get(&offpath_protocol::text_sha256(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token is recognised by its digest; another token, or the digest itself, is not.
    #[test]
    fn tokens_are_checked_by_digest() {
        let digest = offpath_protocol::text_sha256("s3cret");
        let reviewers = Reviewers::new([Reviewer {
            name: "rita".into(),
            token_sha256: digest.clone(),
            tenants: None,
        }]);
        let name = |token: &str| reviewers.who(token).map(|r| r.name.clone());
        assert_eq!(name("s3cret").as_deref(), Some("rita"));
        assert_eq!(name("s3cret "), None);
        assert_eq!(name(&digest), None);
    }

    /// A reviewer line may name the tenants served; without them, every tenant.
    #[test]
    fn reviewers_may_serve_some_tenants_only() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("reviewers.toml");
        let (rita, sam) = ("a".repeat(64), "b".repeat(64));
        let text = format!(
            "[reviewers]\nrita = \"{rita}\"\nsam = {{ token_sha256 = \"{sam}\", tenants = [\"acme\"] }}\n"
        );
        std::fs::write(&path, text).expect("write");
        let reviewers = Reviewers::load(&path).expect("loads");
        let by_name = |name: &str| {
            reviewers
                .by_digest
                .values()
                .find(|r| r.name == name)
                .cloned()
                .expect("reviewer")
        };
        assert!(by_name("rita").serves("acme") && by_name("rita").serves("globex"));
        assert!(by_name("sam").serves("acme") && !by_name("sam").serves("globex"));
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
            (
                "[reviewers]\nsam = { token_sha256 = \"\", tenants = [] }\n",
                "reviewers.sam",
            ),
        ] {
            let path = dir.join("reviewers.toml");
            std::fs::write(&path, text).expect("write");
            let err = Reviewers::load(&path).expect_err("refused").to_string();
            assert!(err.contains(expected), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
