//! MessagePack as Node's `notepack.io` writes it, to and from the JSON-with-placeholders form
//! the socketio crate uses for binary.
//!
//! - JSON → MessagePack: a placeholder `{"_placeholder":true,"num":N}` becomes attachment `N`
//!   as `bin`; integers stay integers, other numbers are float64.
//! - MessagePack → JSON: `bin` and ext type 0 (an ArrayBuffer) become placeholders and
//!   attachments; `undefined` (fixext 1, type 0) and `nil` become `null`; a timestamp
//!   (ext −1) becomes the ISO 8601 string `JSON.stringify` would give a `Date`; map keys that
//!   are not strings are written as their text; NaN and infinities become `null`.

use bytes::Bytes;
use serde_json::{Map, Number, Value};

use crate::protocol::DecodeError;

/// Deepest nesting accepted (a hostile message must not exhaust the stack).
const MAX_DEPTH: usize = 64;

/// JSON with placeholders and attachments → a MessagePack value.
pub(crate) fn from_json(v: &Value, bins: &[Bytes]) -> rmpv::Value {
    match v {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                rmpv::Value::from(u)
            } else if let Some(i) = n.as_i64() {
                rmpv::Value::from(i)
            } else {
                rmpv::Value::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => rmpv::Value::from(s.as_str()),
        Value::Array(a) => rmpv::Value::Array(a.iter().map(|x| from_json(x, bins)).collect()),
        Value::Object(o) => {
            if let Some(b) = placeholder(o).and_then(|n| bins.get(n)) {
                return rmpv::Value::Binary(b.to_vec());
            }
            rmpv::Value::Map(o.iter().map(|(k, x)| (rmpv::Value::from(k.as_str()), from_json(x, bins))).collect())
        }
    }
}

fn placeholder(o: &Map<String, Value>) -> Option<usize> {
    if o.len() == 2 && o.get("_placeholder") == Some(&Value::Bool(true)) {
        o.get("num")?.as_u64().and_then(|n| usize::try_from(n).ok())
    } else {
        None
    }
}

/// MessagePack bytes → JSON with placeholders, and the attachments in placeholder order.
pub(crate) fn to_json(bytes: &[u8]) -> Result<(Value, Vec<Bytes>), DecodeError> {
    let mut rd = bytes;
    let v = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH)
        .map_err(|e| DecodeError::Syntax(format!("msgpack: {e}")))?;
    if !rd.is_empty() {
        return Err(DecodeError::Syntax("msgpack: trailing bytes".into()));
    }
    let mut bins = Vec::new();
    let j = convert(v, &mut bins);
    Ok((j, bins))
}

fn convert(v: rmpv::Value, bins: &mut Vec<Bytes>) -> Value {
    match v {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => Value::Bool(b),
        rmpv::Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(s)) => Value::from(s),
            _ => Value::Null,
        },
        rmpv::Value::F32(f) => Number::from_f64(f64::from(f)).map(Value::Number).unwrap_or(Value::Null),
        rmpv::Value::F64(f) => Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null),
        rmpv::Value::String(s) => match s.into_str() {
            Some(s) => Value::String(s),
            None => Value::Null,
        },
        rmpv::Value::Binary(b) => attach(Bytes::from(b), bins),
        rmpv::Value::Array(a) => Value::Array(a.into_iter().map(|x| convert(x, bins)).collect()),
        rmpv::Value::Map(m) => {
            let mut o = Map::new();
            for (k, x) in m {
                let key = match k {
                    rmpv::Value::String(s) => s.into_str().unwrap_or_default(),
                    other => other.to_string(),
                };
                o.insert(key, convert(x, bins));
            }
            Value::Object(o)
        }
        // notepack's `undefined`.
        rmpv::Value::Ext(0, d) if d == [0] => Value::Null,
        // An ArrayBuffer or a typed array.
        rmpv::Value::Ext(0, d) => attach(Bytes::from(d), bins),
        rmpv::Value::Ext(-1, d) => timestamp(&d).map(Value::String).unwrap_or(Value::Null),
        rmpv::Value::Ext(_, _) => Value::Null,
    }
}

fn attach(b: Bytes, bins: &mut Vec<Bytes>) -> Value {
    let num = bins.len();
    bins.push(b);
    serde_json::json!({ "_placeholder": true, "num": num })
}

/// A MessagePack timestamp as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn timestamp(d: &[u8]) -> Option<String> {
    let (secs, nanos): (i64, u32) = match d.len() {
        4 => (i64::from(u32::from_be_bytes(d.try_into().ok()?)), 0),
        8 => {
            let x = u64::from_be_bytes(d.try_into().ok()?);
            (i64::try_from(x & 0x3_ffff_ffff).ok()?, u32::try_from(x >> 34).ok()?)
        }
        12 => (i64::from_be_bytes(d[4..12].try_into().ok()?), u32::from_be_bytes(d[0..4].try_into().ok()?)),
        _ => return None,
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, day) = civil_from_days(days);
    Some(format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        nanos / 1_000_000
    ))
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enc(v: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    #[test]
    fn notepack_shapes() {
        // undefined, an ArrayBuffer (ext8 type 0), a Buffer (bin), a float, a Date.
        let date_secs: u32 = 1_700_000_000; // 2023-11-14T22:13:20Z
        let v = rmpv::Value::Array(vec![
            rmpv::Value::Ext(0, vec![0]),
            rmpv::Value::Ext(0, vec![1, 2, 3]),
            rmpv::Value::Binary(vec![4, 5]),
            rmpv::Value::F64(1.5),
            rmpv::Value::Ext(-1, date_secs.to_be_bytes().to_vec()),
            rmpv::Value::Map(vec![(rmpv::Value::from(1), rmpv::Value::from("one"))]),
        ]);
        let (j, bins) = to_json(&enc(&v)).unwrap();
        assert_eq!(
            j,
            json!([null, {"_placeholder": true, "num": 0}, {"_placeholder": true, "num": 1}, 1.5,
                   "2023-11-14T22:13:20.000Z", {"1": "one"}])
        );
        assert_eq!(bins, vec![Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[4, 5])]);
        // And back: the placeholders become bin in place.
        let back = from_json(&j, &bins);
        let rmpv::Value::Array(items) = back else { panic!() };
        assert_eq!(items[1], rmpv::Value::Binary(vec![1, 2, 3]));
        assert_eq!(items[2], rmpv::Value::Binary(vec![4, 5]));
    }

    #[test]
    fn integers_keep_their_sign_and_size() {
        let j = json!([0, -1, u64::MAX, i64::MIN, 0.25]);
        let (back, _) = to_json(&enc(&from_json(&j, &[]))).unwrap();
        assert_eq!(back, j);
    }

    #[test]
    fn timestamps_of_all_three_sizes() {
        assert_eq!(timestamp(&0u32.to_be_bytes()).as_deref(), Some("1970-01-01T00:00:00.000Z"));
        let t64: u64 = (250_000_000u64 << 34) | 951_782_400; // 2000-02-29T00:00:00.250Z
        assert_eq!(timestamp(&t64.to_be_bytes()).as_deref(), Some("2000-02-29T00:00:00.250Z"));
        let mut t96 = 0u32.to_be_bytes().to_vec();
        t96.extend((-86_400i64).to_be_bytes());
        assert_eq!(timestamp(&t96).as_deref(), Some("1969-12-31T00:00:00.000Z"));
    }
}
