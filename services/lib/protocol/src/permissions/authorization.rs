//! The `authorization { users = [...] }` block of a nats-server config: each role's user,
//! password (or the variable holding it) and permissions, after the checks that keep two
//! roles (or two tenants) from sharing what they may use.

use std::fmt::Write as _;

use super::{PermissionsError, Role};

/// How a user's password appears in the generated config.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    /// The password itself (the local server of `offpath up`; the file is 0600).
    Literal(String),
    /// A reference to the role's environment variable ([`Role::password_variable`]),
    /// resolved by nats-server at start: the deployment file holds no secret, and a missing
    /// variable stops the server instead of leaving the user open.
    FromEnv,
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Password::Literal(_) => f.write_str("Literal(<redacted>)"),
            Password::FromEnv => f.write_str("FromEnv"),
        }
    }
}
/// The `authorization { users = [...] }` block of a nats-server config for `users`. No
/// `no_auth_user`: a client without credentials is refused.
pub fn authorization_block(users: &[(Role, Password)]) -> Result<String, PermissionsError> {
    check_users(users)?;
    let mut out = String::from("authorization {\n  users = [\n");
    for (role, password) in users {
        write_user(&mut out, role, password);
    }
    out.push_str("  ]\n}\n");
    Ok(out)
}

/// Refuses an invalid token, two roles with one user name or password variable, and a
/// shared transport user beside another tenant's transport.
fn check_users(users: &[(Role, Password)]) -> Result<(), PermissionsError> {
    let mut seen = std::collections::BTreeSet::new();
    for (role, _) in users {
        role.check()?;
        for key in [role.user(), role.password_variable()] {
            if !seen.insert(key.clone()) {
                return Err(PermissionsError::Duplicate(key));
            }
        }
    }
    for (role, _) in users {
        let Role::Transport {
            tenant,
            instance: None,
        } = role
        else {
            continue;
        };
        let other = users.iter().find_map(|(other, _)| match other {
            Role::Transport { tenant: t, .. } if t != tenant => Some(t.clone()),
            _ => None,
        });
        if let Some(other) = other {
            return Err(PermissionsError::SharedBesideOtherTenants {
                tenant: tenant.clone(),
                other,
            });
        }
    }
    Ok(())
}

/// Appends one user's entry: its name, password and permissions.
fn write_user(out: &mut String, role: &Role, password: &Password) {
    let password = match password {
        Password::Literal(secret) => quote(secret),
        Password::FromEnv => format!("${}", role.password_variable()),
    };
    let p = role.permissions();
    let _ = write!(
        out,
        "    {{\n      user: {user}\n      password: {password}\n      permissions: {{\n        \
         publish: {{ allow: {publish} }}\n        subscribe: {{ allow: {subscribe} }}\n",
        user = quote(&role.user()),
        publish = list(&p.publish),
        subscribe = list(&p.subscribe),
    );
    if p.allow_responses {
        out.push_str("        allow_responses: true\n");
    }
    out.push_str("      }\n    }\n");
}

/// A double-quoted config string (no variable expansion inside quotes).
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn list(subjects: &[String]) -> String {
    let items: Vec<String> = subjects.iter().map(|s| quote(s)).collect();
    format!("[{}]", items.join(", "))
}
