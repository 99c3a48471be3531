//! A client's receiver: records deliveries of other members' messages and the verdicts on
//! its own (acks map the server's ids to the sender's sequence numbers).

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use super::Observed;

/// Reads one client's frames until its socket closes; signals `joined` when it is in its
/// room.
pub(super) async fn read(
    mut stream: impl futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
    + Unpin,
    observed: Arc<Observed>,
    joined: tokio::sync::oneshot::Sender<()>,
) {
    let mut joined = Some(joined);
    // The sender's own messages: id → seq, from the acks (verdicts carry only the id).
    let mut own: HashMap<String, usize> = HashMap::new();
    let seq_of_text = |text: &str| text.rsplit_once(" #").and_then(|(_, s)| s.parse().ok());
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        match frame["type"].as_str() {
            Some("message") => {
                let mine = frame["id"].as_str().is_some_and(|id| own.contains_key(id));
                if let (false, Some(seq)) = (mine, frame["text"].as_str().and_then(seq_of_text)) {
                    observed.delivered(seq);
                }
            }
            Some("ack") => {
                if let (Some(id), Some(seq)) = (
                    frame["id"].as_str(),
                    frame["client_msg_id"].as_str().and_then(|c| c.parse().ok()),
                ) {
                    own.insert(id.to_string(), seq);
                }
            }
            Some("verdict") => {
                if let Some(seq) = frame["id"].as_str().and_then(|id| own.get(id)) {
                    observed.verdict_for(
                        *seq,
                        frame["action"].as_str().unwrap_or_default(),
                        frame["reason"].as_str(),
                    );
                }
            }
            Some("joined") => {
                if let Some(joined) = joined.take() {
                    let _ = joined.send(());
                }
            }
            _ => {}
        }
    }
}
