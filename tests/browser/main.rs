//! The chat page and the reviewers' console in a real browser (Debian's chromium, driven
//! through chromedriver): two users chat, a blocked message turns into "message removed"
//! on both pages, a user reports a message the model let through, and a reviewer removes it
//! and a flagged insult in the console (the flag listed first: one member's report ranks after it;
//! its card names the category that decided, and the sender's removal notice names its own): both disappear from both
//! pages. Without chromium and chromedriver (`scripts/bootstrap --browser`
//! installs them) the test fails in CI and under `scripts/test`, and elsewhere (or with
//! `OFFPATH_ALLOW_SKIP=1`) says it skipped, and why.
//!
//! Screenshots of the chat page and the console go to `$OFFPATH_SCREENSHOTS` (the committed
//! ones in `docs/screenshots/` were made so), else to the temporary directory.
//!
//! Issue 27's page fixes are checked along the way (`browser/page.rs`): labels and focus,
//! the sender's removal notice, a late joiner's history, the size check and long words,
//! reconnecting, switching rooms, a pre-moderated room, the name rule and refused tokens in
//! words; `page_colours_have_aa_contrast` checks both pages' colours without a browser.

#[path = "../common/mod.rs"]
mod common;
mod contrast;
mod page;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::chat::{self, Transport};
use fantoccini::{Client, ClientBuilder, Locator};
use offpath_harness::process;
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(30);
/// Room for a moderator process to start and load its models.
const WAIT_MODEL: Duration = Duration::from_secs(90);
/// Insults are flagged (kept, queued for review); profanity (a signal: acted on only where
/// a policy opts in) blocks.
const POLICIES: &str = "default = \"chat\"\n[policies.chat]\nlabels.harassment = { action = \"flag\" }\n\
    labels.profanity = { action = \"block\" }\n";
const TOKEN: &str = "rita-secret-token";
const PROFANE: &str = "fuck this shit, fuck it all";
/// Flagged as harassment; long enough that the moderator locates the harassing part (its
/// `span`), which the console marks.
const INSULT: &str = "see you all at the garden cleanup on sunday morning, and you are a \
    pathetic worthless loser, nobody here wants you";
/// Allowed by the model; bob reports it.
const CREEPY: &str = "i have your old photos saved";

/// A browser session with a profile of its own (chromium refuses two sessions on one).
struct Browser {
    client: Client,
    _profile: tempfile::TempDir,
}

async fn browser(webdriver: u16, size: (u32, u32)) -> Browser {
    let profile = tempfile::tempdir().expect("profile dir");
    let args = [
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        format!("--window-size={},{}", size.0, size.1),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    let caps = serde_json::json!({"goog:chromeOptions": {"binary": CHROMIUM, "args": args}});
    let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
    builder.capabilities(caps.as_object().cloned().unwrap_or_default());
    let started = Instant::now();
    let client = loop {
        match builder
            .connect(&format!("http://127.0.0.1:{webdriver}"))
            .await
        {
            Ok(client) => break client,
            Err(err) if started.elapsed() > Duration::from_secs(20) => {
                panic!("chromium and chromedriver are installed but no session starts: {err}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    Browser {
        client,
        _profile: profile,
    }
}

/// The chat page's message lines: `(class, sender, text)`.
async fn lines(page: &Client) -> Vec<(String, String, String)> {
    let script = "return [...document.querySelectorAll('#log .msg')].map(e => \
        [e.className, e.querySelector('.who').textContent, e.querySelector('.body').textContent]);";
    let value = page.execute(script, vec![]).await.expect("script runs");
    serde_json::from_value::<Vec<(String, String, String)>>(value).expect("lines")
}

/// Waits until `done` holds for the page's lines.
async fn until(
    page: &Client,
    what: &str,
    wait: Duration,
    done: impl Fn(&[(String, String, String)]) -> bool,
) {
    let deadline = Instant::now() + wait;
    loop {
        let now = lines(page).await;
        if done(&now) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}; the page shows {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens the chat page at `addr` and joins `lobby` as `user`.
async fn join(page: &Client, addr: std::net::SocketAddr, user: &str) {
    page.goto(&format!("http://{addr}/"))
        .await
        .expect("chat page");
    page.find(Locator::Css("#user"))
        .await
        .expect("name field")
        .send_keys(user)
        .await
        .expect("type");
    page.find(Locator::Css("#join-button"))
        .await
        .expect("join")
        .click()
        .await
        .expect("click");
    page.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#send-button:not([disabled])"))
        .await
        .expect("joined: the send button is enabled");
}

/// The element at `xpath` on `page`, waited for up to [`WAIT`]; `what` names it in the
/// panic when it does not come.
async fn find(page: &Client, xpath: &str, what: &str) -> fantoccini::elements::Element {
    page.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(xpath))
        .await
        .expect(what)
}

/// Clicks the element at `xpath`, found again when the console redrew its cards between
/// finding and clicking (a refresh that brings news replaces every card: the element found
/// is then stale; seen once in a fresh-clone run).
async fn click(page: &Client, xpath: &str, what: &str) {
    let mut attempts = 0;
    loop {
        let element = find(page, xpath, what).await;
        match element.click().await {
            Ok(_) => return,
            Err(err) if attempts < 10 => {
                attempts += 1;
                eprintln!("{what}: click again ({err})");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("{what}: {err}"),
        }
    }
}

async fn say(page: &Client, text: &str) {
    page.find(Locator::Css("#text"))
        .await
        .expect("text field")
        .send_keys(text)
        .await
        .expect("type");
    page.find(Locator::Css("#send-button"))
        .await
        .expect("send")
        .click()
        .await
        .expect("click");
}

fn screenshots() -> PathBuf {
    std::env::var_os("OFFPATH_SCREENSHOTS").map_or_else(std::env::temp_dir, PathBuf::from)
}

async fn screenshot(page: &Client, name: &str) {
    let png = page.screenshot().await.expect("screenshot");
    let path = screenshots().join(name);
    std::fs::create_dir_all(screenshots()).expect("screenshot dir");
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

#[tokio::test]
async fn chat_pages_and_the_console_in_a_real_browser() {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(tool).exists() {
            common::skip::skip_or_fail(&format!(
                "{tool} is not installed (Debian's chromium and chromium-driver; `scripts/bootstrap --browser` installs them)"
            ));
            return;
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies.toml");
    std::fs::write(&policies, POLICIES).expect("write policies");
    let server = chat::nats_with_topology().await;
    let _moderator =
        chat::moderator(&server, &[&format!("--policies={}", policies.display())]).await;
    let config = offpath_transport::Config {
        moderation: offpath_transport::ModerationConfig {
            room_policy: vec!["kids=hold:fail_closed".parse().expect("a room rule")],
            ..chat::transport_config().moderation
        },
        ..chat::transport_config()
    };
    let transport = Transport::start(&server, config).await;
    let (_console, console_addr) = chat::review_console(&server, dir.path(), TOKEN).await;
    let webdriver = process::concrete_addr(([127, 0, 0, 1], 0).into())
        .expect("a free port")
        .port();
    let _driver = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={webdriver}"))
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");

    let alice = browser(webdriver, (900, 640)).await;
    let bob = browser(webdriver, (390, 700)).await;
    let (alice, bob) = (&alice.client, &bob.client);
    join(alice, transport.public, "alice").await;
    join(bob, transport.public, "bob").await;
    page::after_join(alice).await;
    page::after_join(bob).await;

    say(alice, "hello bob, see you at noon").await;
    until(bob, "bob sees alice's message", WAIT, |l| {
        l.iter()
            .any(|(_, who, text)| who == "alice" && text.starts_with("hello bob"))
    })
    .await;
    // Blocked by the model: "message removed" on both pages, the text nowhere.
    say(alice, PROFANE).await;
    for page in [alice, bob] {
        until(page, "the blocked message is removed", WAIT_MODEL, |l| {
            l.iter()
                .any(|(class, _, text)| class.contains("removed") && text == "message removed")
                && !l.iter().any(|(_, _, text)| text == PROFANE)
        })
        .await;
    }
    page::removal_notice(alice, bob).await;
    // Flagged: shown, and queued for a reviewer.
    say(alice, INSULT).await;
    until(bob, "bob sees the flagged message", WAIT, |l| {
        l.iter().any(|(_, _, text)| text == INSULT)
    })
    .await;
    // Allowed, and reported by bob with the button on its line.
    say(alice, CREEPY).await;
    let line =
        format!("//div[contains(@class,'msg')][.//span[@class='body' and text()='{CREEPY}']]");
    find(
        bob,
        &format!("{line}//button[@class='report-button']"),
        "a report button on alice's message",
    )
    .await
    .click()
    .await
    .expect("click report");
    bob.find(Locator::XPath(&format!(
        "{line}//form[@class='report-form']/input"
    )))
    .await
    .expect("the reason field")
    .send_keys("creepy")
    .await
    .expect("type");
    bob.find(Locator::XPath(&format!(
        "{line}//form[@class='report-form']/button"
    )))
    .await
    .expect("send report")
    .click()
    .await
    .expect("click");
    find(
        bob,
        &format!("{line}//span[@class='state' and text()='reported']"),
        "the gateway answered `reported`",
    )
    .await;

    {
        let carol = browser(webdriver, (600, 700)).await;
        let shown = ["hello bob, see you at noon", INSULT, CREEPY];
        page::late_joiner(&carol.client, transport.public, &shown, PROFANE).await;
        let _ = carol.client.clone().close().await;
    }
    let reviewer = browser(webdriver, (1000, 700)).await;
    let reviewer = &reviewer.client;
    reviewer
        .goto(&format!("http://{console_addr}/"))
        .await
        .expect("console page");
    reviewer
        .find(Locator::Css("#token"))
        .await
        .expect("token field")
        .send_keys(TOKEN)
        .await
        .expect("type");
    reviewer
        .find(Locator::Css("#sign-in"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("sign in");
    let item = |text: &str| {
        format!("//div[contains(@class,'item')][.//div[@class='text' and .='{text}']]")
    };
    find(
        reviewer,
        &item(INSULT),
        "the flagged message is in the queue",
    )
    .await;
    // Its card names the category that decided (issue 29): one of the two labels this
    // policy acts on that the insult reaches (both flag it; the higher score decides).
    find(
        reviewer,
        &format!(
            "{}[.//span[@class='category' and (text()='harassment' or text()='profanity')]]",
            item(INSULT)
        ),
        "the flagged message's card names its category",
    )
    .await;
    // And marks the part of the text it was about (the verdict's span), not the chatter
    // before it.
    let mark = find(
        reviewer,
        &format!("{}//div[@class='text']/mark[@class='span']", item(INSULT)),
        "the flagged message's card marks the harassing part",
    )
    .await
    .text()
    .await
    .expect("the marked part");
    assert!(
        mark.contains("worthless loser") && !mark.contains("garden"),
        "{mark:?}"
    );
    page::verdict_span(alice, INSULT).await;
    // One member's report ranks after the model's flag (many members' would rank first).
    let second =
        format!("(//div[contains(@class,'item')])[2][.//div[@class='text' and text()='{CREEPY}']]");
    find(
        reviewer,
        &format!("{second}[.//span[@class='kind report']]"),
        "bob's report is in the queue, after the flag",
    )
    .await;
    let count = reviewer
        .find(Locator::Css("#count"))
        .await
        .expect("count")
        .text()
        .await
        .expect("count text");
    assert_eq!(count, "2 open items");
    // Issue 27: a note belongs to its card. One is written on the report's card; a key then
    // escalates the selected flag, which goes without it, and the note is still there.
    let note = "reported twice in DMs";
    reviewer
        .find(Locator::XPath(&format!(
            "{}//input[@class='note']",
            item(CREEPY)
        )))
        .await
        .expect("the report's note field")
        .send_keys(note)
        .await
        .expect("type a note");
    click(
        reviewer,
        &format!("{}//div[@class='text']", item(INSULT)),
        "select the flag",
    )
    .await;
    reviewer
        .find(Locator::Css("body"))
        .await
        .expect("body")
        .send_keys("e")
        .await
        .expect("escalate key");
    find(reviewer, &format!(
            "{}//ol[@class='trail']/li[@class='decision' and contains(., 'escalate by rita') and not(contains(., '\"'))]",
            item(INSULT)
        ), "the flag's trail shows its escalation, with no note, and its time").await;
    let kept = reviewer
        .find(Locator::XPath(&format!(
            "{}//input[@class='note']",
            item(CREEPY)
        )))
        .await
        .expect("the report's note field")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(kept.as_deref(), Some(note), "the note stayed on its card");
    // Beside the selected item: the sender's other items and what was decided on them.
    find(
        reviewer,
        &format!(
            "{}//div[@class='history']//li[contains(., 'old photos saved')]",
            item(INSULT)
        ),
        "the flag's card lists the sender's reported message",
    )
    .await;
    // And the sender's recent verdicts: alice's profanity, blocked before it reached anyone
    // (the policy does not queue blocks for review).
    find(reviewer, &format!(
            "{}//ul[contains(@class,'verdicts')]/li[contains(., 'model block') and contains(., 'profanity')]",
            item(INSULT)
        ), "the flag's card lists the sender's auto-blocked message").await;
    screenshot(reviewer, "console.png").await;
    for text in [CREEPY, INSULT] {
        click(
            reviewer,
            &format!("{}//button[@data-decision='remove']", item(text)),
            "remove button",
        )
        .await;
        // A button asks first, as the key does.
        click(
            reviewer,
            &format!("{}//button[@data-confirm='remove']", item(text)),
            "the remove asks for confirmation",
        )
        .await;
        for page in [alice, bob] {
            until(page, "the reviewer's remove reaches the page", WAIT, |l| {
                !l.iter().any(|(_, _, shown)| shown == text)
            })
            .await;
        }
    }
    for page in [alice, bob] {
        until(page, "three messages removed", WAIT, |l| {
            l.iter()
                .filter(|(class, _, _)| class.contains("removed"))
                .count()
                == 3
        })
        .await;
    }
    let left: Value = reviewer
        .execute(
            "return document.querySelectorAll('#queue .item').length;",
            vec![],
        )
        .await
        .expect("count");
    let deadline = Instant::now() + WAIT;
    let mut left = left;
    while left != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        left = reviewer
            .execute(
                "return document.querySelectorAll('#queue .item').length;",
                vec![],
            )
            .await
            .expect("count");
    }
    assert_eq!(left, Value::from(0), "the decided item left the open queue");
    page::reviewer_notice(alice, bob).await;
    screenshot(alice, "chat.png").await;
    screenshot(bob, "chat-phone.png").await;
    page::size_and_long_words(alice, bob).await;
    page::reconnects(alice).await;
    page::rooms(alice, "kids", PROFANE).await;
    page::names(bob, transport.public).await;
    let tokens = Transport::start_with(&server, chat::transport_config(), Arc::new(page::tokens()));
    let tokens = tokens.await;
    page::refused_tokens(bob, tokens.public).await;
    tokens.stop().await;
    for page in [alice, bob, reviewer] {
        let _ = page.clone().close().await;
    }
    transport.stop().await;
}

/// WCAG AA (issue 27, item 9): every text colour of the chat page's and the console's style
/// sheets has at least 4.5:1 contrast against each background it may be drawn on
/// (`contrast` says how that is read from the CSS). Before, "message removed" and
/// "pending moderation…" were #8a93a3: 3.1:1 on white, 2.8:1 on the own-message tint.
#[test]
fn page_colours_have_aa_contrast() {
    let round = |r: f64| (r * 10.0).round() / 10.0;
    assert_eq!(
        round(contrast::ratio("#8a93a3", "#fff")),
        3.1,
        "the issue's figure"
    );
    assert_eq!(
        round(contrast::ratio("#8a93a3", "#eef3fd")),
        2.8,
        "the issue's figure"
    );
    assert_eq!(round(contrast::ratio("#000", "#ffffff")), 21.0);
    let old = ".msg.mine { background: #eef3fd; }\n.msg.removed .body { color: #8a93a3; }";
    assert!(
        !contrast::failing(old, 4.5).0.is_empty(),
        "the old colours fail"
    );
    let sheets = [
        (
            "chat.css",
            include_str!("../../services/transport/src/chat.css"),
        ),
        (
            "console.css",
            include_str!("../../services/review/src/console.css"),
        ),
    ];
    for (name, css) in sheets {
        let (failing, checked) = contrast::failing(css, 4.5);
        assert!(checked >= 10, "{name}: only {checked} pairs read");
        assert!(failing.is_empty(), "{name}: below 4.5:1: {failing:#?}");
    }
}
