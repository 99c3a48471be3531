use super::*;

/// Scenario names round-trip and unknown names are refused.
#[test]
fn scenario_names() {
    let all: Vec<String> = Scenario::ALL.iter().map(Scenario::name).collect();
    assert_eq!(
        all,
        [
            "none",
            "decoupled",
            "decoupled-slow",
            "decoupled-hung",
            "inline",
            "inline-slow",
            "inline-hung",
            "decoupled-secure"
        ]
    );
    assert_eq!(Scenario::parse_list("none, inline-hung").unwrap().len(), 2);
    assert!(Scenario::parse_list("none,sideways").is_err());
}
