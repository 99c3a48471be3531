use super::*;

fn transport(tenant: &str, instance: Option<&str>) -> Role {
    Role::Transport {
        tenant: tenant.into(),
        instance: instance.map(Into::into),
    }
}

/// A transport may publish only its own tenant's requests and may subscribe only to its
/// own inbox; its consumer-create subject carries its tenant's filter.
#[test]
fn transport_is_confined_to_its_tenant() {
    let p = transport("acme", None).permissions();
    assert!(p.publish.contains(&"offpath.req.acme".to_string()));
    assert!(
        !p.publish
            .iter()
            .any(|s| s.contains("globex") || s == "offpath.req.*")
    );
    assert!(!p.publish.iter().any(|s| s.starts_with("offpath.verdict")));
    assert!(
        p.publish
            .contains(&"$JS.API.CONSUMER.CREATE.VERDICTS.*.offpath.verdict.acme.*".to_string())
    );
    assert!(
        !p.publish
            .iter()
            .any(|s| s.contains("DELETE") || s.contains("STREAM.CREATE"))
    );
    assert_eq!(p.subscribe, vec!["_INBOX_transport_acme.>".to_string()]);
    assert!(!p.allow_responses);
}

/// A transport credential pinned to an instance names exactly one consumer.
#[test]
fn pinned_transport_names_its_consumer() {
    let p = transport("acme", Some("gw1")).permissions();
    assert!(
        p.publish
            .contains(&"$JS.API.CONSUMER.MSG.NEXT.VERDICTS.transport-acme-gw1".to_string())
    );
    assert!(!p.publish.iter().any(|s| s.contains("VERDICTS.*")));
    let role = transport("acme", Some("gw1"));
    assert_eq!(role.user(), "transport-acme-gw1");
    assert_eq!(role.inbox_prefix(), "_INBOX_transport_acme");
}

/// Only the topology role may use the stream-management API.
#[test]
fn only_topology_manages_streams() {
    for role in [Role::Moderator, transport("acme", None)] {
        assert!(
            !role
                .permissions()
                .publish
                .iter()
                .any(|s| s.starts_with("$JS.API.>")
                    || s.contains("STREAM.CREATE")
                    || s.contains("DELETE"))
        );
    }
    assert_eq!(
        Role::Topology.permissions().publish,
        ["$JS.API.>", "$KV.offpath-policies.>"]
    );
    // Moderators watch the policy bucket; nobody but the topology user writes it.
    for role in [Role::Moderator, transport("acme", None)] {
        assert!(
            !role
                .permissions()
                .publish
                .iter()
                .any(|s| s.starts_with("$KV."))
        );
    }
}

/// The block names every user, quotes subjects, reads passwords from variables, and has
/// no anonymous user.
#[test]
fn renders_an_authorization_block() {
    let block = authorization_block(&[
        (Role::Moderator, Password::FromEnv),
        (transport("acme", None), Password::Literal("s\"3".into())),
    ])
    .expect("block");
    assert!(block.contains("user: \"moderator\""));
    assert!(block.contains("password: $OFFPATH_NATS_PASSWORD_MODERATOR"));
    assert!(block.contains("password: \"s\\\"3\""));
    assert!(block.contains("allow_responses: true"));
    assert!(!block.contains("no_auth_user"));
}

/// Invalid tenants and colliding users are refused; a literal password is redacted in Debug.
#[test]
fn refuses_bad_roles() {
    let bad = authorization_block(&[(transport("a.b", None), Password::FromEnv)]);
    assert!(matches!(bad, Err(PermissionsError::InvalidToken(_))));
    let twice = authorization_block(&[
        (transport("a-b", None), Password::FromEnv),
        (transport("a_b", None), Password::FromEnv),
    ]);
    assert!(matches!(twice, Err(PermissionsError::Duplicate(_))));
    assert_eq!(
        format!("{:?}", Password::Literal("x".into())),
        "Literal(<redacted>)"
    );
}

/// A shared tenant user may use any VERDICTS consumer by name: it is refused beside another
/// tenant's transport (pinned or not), and allowed when its tenant is the only one.
#[test]
fn a_shared_tenant_user_is_refused_beside_other_tenants() {
    let mixed = authorization_block(&[
        (transport("globex", None), Password::FromEnv),
        (transport("acme", Some("gw1")), Password::FromEnv),
    ]);
    let Err(err) = mixed else {
        panic!("a shared globex user beside acme was accepted")
    };
    assert!(matches!(
        err,
        PermissionsError::SharedBesideOtherTenants { ref tenant, ref other }
            if tenant == "globex" && other == "acme"
    ));
    assert!(err.to_string().contains("--transport globex=<instance>"));
    let alone = authorization_block(&[
        (Role::Moderator, Password::FromEnv),
        (transport("globex", None), Password::FromEnv),
        (transport("globex", Some("gw1")), Password::FromEnv),
    ]);
    assert!(alone.is_ok(), "{alone:?}");
}

/// An integration calls classify and reads its own inbox: nothing of the tenant's request
/// or verdict subjects (the gateway's), nothing of the JetStream API.
#[test]
fn integration_is_confined_to_its_tenant() {
    let role = Role::Integration {
        tenant: "acme".into(),
    };
    assert_eq!(role.user(), "integration-acme");
    assert_eq!(role.inbox_prefix(), "_INBOX_integration_acme");
    assert_eq!(
        role.password_variable(),
        "OFFPATH_NATS_PASSWORD_INTEGRATION_ACME"
    );
    let p = role.permissions();
    assert_eq!(p.publish, vec!["offpath.classify".to_string()]);
    assert_eq!(p.subscribe, vec!["_INBOX_integration_acme.>".to_string()]);
    assert!(!p.allow_responses);
    let bad = Role::Integration {
        tenant: "ac.me".into(),
    };
    assert!(matches!(
        authorization_block(&[(bad, Password::FromEnv)]),
        Err(PermissionsError::InvalidToken(_))
    ));
}

/// A classify answer goes to an anonymous inbox or an inbox of the request's own tenant,
/// never to a stream's subject, an acknowledgement, another role's or tenant's inbox.
#[test]
fn classify_answers_only_the_tenants_own_inbox() {
    for reply in [
        "_INBOX.abc.1",
        "_INBOX_integration_acme.abc.1",
        "_INBOX_transport_acme.x",
    ] {
        assert!(classify_reply_allowed(reply, "acme"), "{reply}");
    }
    for reply in [
        "offpath.verdict.acme.lobby",
        "offpath.review.acme",
        "$JS.ACK.MODERATION.moderator.1.2.3.4.5",
        "$KV.offpath-policies.policies",
        "_INBOX_integration_globex.abc",
        "_INBOX_transport_globex.abc",
        "_INBOX_reviewer.abc",
        "_INBOX_moderator.abc",
        "_INBOX_integration_acme",
        "_INBOX.",
        "_INBOX..x",
        "_INBOXX.a",
        "",
    ] {
        assert!(!classify_reply_allowed(reply, "acme"), "{reply}");
    }
    assert_eq!(
        classify_reply_inbox("_INBOX_integration_globex.a"),
        Some(ReplyInbox::Tenant("globex"))
    );
    assert_eq!(classify_reply_inbox("_INBOX_reviewer.a"), None);
}
