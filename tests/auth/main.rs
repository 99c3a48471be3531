//! NATS authorization and TLS from outside: what each role's credentials may and may not
//! do, on the newest and on the oldest supported nats-server; the deployment's NATS
//! configuration; a moderator refused the topology; the launcher's login and TLS flags;
//! `offpath up`'s local users; the reply-subject redirects (issue 26).

#[path = "../common/mod.rs"]
mod common;
mod nats_auth;
mod nats_auth_deploy;
mod nats_auth_oldest;
mod nats_auth_refused;
mod nats_auth_tls;
mod nats_auth_up;
mod reply_redirect;
