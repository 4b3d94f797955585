//! Binary anywhere in event arguments: placeholders produced on the way out and resolved on
//! the way in, so that application types carry their bytes where they belong.
//!
//! Socket.IO sends binary data as attachments: the JSON arguments hold an object
//! `{"_placeholder":true,"num":N}` where attachment `N` goes, at any depth. Here:
//!
//! - [`to_payload`] serializes any `Serialize` value to JSON and turns every byte string it
//!   meets ([`bytes::Bytes`], `serde_bytes`, anything that calls `serialize_bytes`) into an
//!   attachment and a placeholder in its place: `emit("upload", &Upload { name, file: Bytes })`
//!   sends `["upload",{"name":…,"file":{"_placeholder":true,"num":0}}]` plus the bytes, which
//!   the official clients receive as a `Buffer` (JS) or `bytes` (Python) in that place.
//! - [`from_payload`] deserializes JSON arguments and their attachments into any
//!   `DeserializeOwned` type: a placeholder becomes the bytes for a field of type `Bytes`,
//!   `Vec<u8>` or `serde_bytes::ByteBuf`, and stays the placeholder object for a
//!   [`serde_json::Value`] (so `Event::args` still shows where each attachment goes).
//!
//! `Vec<u8>` serializes as a JSON array of numbers, as serde_json does; use `Bytes` to send
//! binary.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};
use serde_json::{Map, Value};

/// Whether `o` is a placeholder object; its attachment index if so.
fn placeholder_num(v: &Value) -> Option<Option<usize>> {
    let o = v.as_object()?;
    if o.len() != 2 || o.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    Some(o.get("num").and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok()))
}

fn placeholder(num: usize) -> Value {
    let mut o = Map::with_capacity(2);
    o.insert("_placeholder".into(), Value::Bool(true));
    o.insert("num".into(), Value::from(num));
    Value::Object(o)
}

/// Serializes `value` to JSON, moving every byte string into the returned attachments (in
/// order) and leaving a placeholder in its place.
///
/// ```
/// use bytes::Bytes;
/// use serde_json::json;
/// let (json, bins) = switchboard_socketio::to_payload(&json!({"a": 1})).unwrap();
/// assert!(bins.is_empty());
/// #[derive(serde::Serialize)]
/// struct File { name: &'static str, data: Bytes }
/// let (json, bins) =
///     switchboard_socketio::to_payload(&(1, File { name: "a.txt", data: Bytes::from_static(b"hi") })).unwrap();
/// assert_eq!(json, json!([1, {"name": "a.txt", "data": {"_placeholder": true, "num": 0}}]));
/// assert_eq!(bins, vec![Bytes::from_static(b"hi")]);
/// ```
pub fn to_payload<T: Serialize + ?Sized>(value: &T) -> Result<(Value, Vec<Bytes>), serde_json::Error> {
    let mut bins = Vec::new();
    let v = value.serialize(PayloadSerializer { bins: &mut bins })?;
    Ok((v, bins))
}

/// Deserializes `value` with its `binary` attachments: placeholders become bytes wherever the
/// target type asks for bytes (`Bytes`, `Vec<u8>`, `serde_bytes::ByteBuf`).
///
/// ```
/// use bytes::Bytes;
/// use serde_json::json;
/// #[derive(serde::Deserialize)]
/// struct File { name: String, data: Bytes }
/// let v = json!({"name": "a.txt", "data": {"_placeholder": true, "num": 0}});
/// let f: File = switchboard_socketio::from_payload(&v, &[Bytes::from_static(b"hi")]).unwrap();
/// assert_eq!((f.name.as_str(), &f.data[..]), ("a.txt", &b"hi"[..]));
/// ```
pub fn from_payload<T: DeserializeOwned>(value: &Value, binary: &[Bytes]) -> Result<T, serde_json::Error> {
    T::deserialize(PayloadDeserializer { value, bins: binary })
}

/// Places `n` attachments in `args`: if `args` already hold placeholders (arguments received
/// from a client and sent on, or built by [`to_payload`]), they must name each of the `n`
/// attachments exactly once; if they hold none, the attachments are appended as further
/// arguments. `Err` names the problem.
pub(crate) fn place_attachments(args: &mut Vec<Value>, n: usize) -> Result<(), String> {
    if n == 0 {
        // No binary (almost every emit): nothing to place, no walk over the arguments.
        return Ok(());
    }
    let mut seen = vec![false; n];
    let mut count = 0usize;
    let mut bad = None;
    for a in args.iter() {
        visit_placeholders(a, &mut |num| {
            count += 1;
            match num.and_then(|i| seen.get_mut(i)) {
                Some(s) if !*s => *s = true,
                _ => bad = Some(num),
            }
        });
    }
    if let Some(num) = bad {
        return Err(match num {
            Some(i) => format!("placeholder {i} does not name a distinct attachment of {n}"),
            None => "placeholder without a valid num".into(),
        });
    }
    if count == 0 {
        args.extend((0..n).map(placeholder));
        return Ok(());
    }
    if count != n {
        return Err(format!("{count} placeholders for {n} attachments"));
    }
    Ok(())
}

fn visit_placeholders(v: &Value, f: &mut impl FnMut(Option<usize>)) {
    if let Some(num) = placeholder_num(v) {
        return f(num);
    }
    match v {
        Value::Array(a) => a.iter().for_each(|x| visit_placeholders(x, f)),
        Value::Object(o) => o.values().for_each(|x| visit_placeholders(x, f)),
        _ => {}
    }
}

// ------------------------------------------------------------------ serializer

struct PayloadSerializer<'a> {
    bins: &'a mut Vec<Bytes>,
}

fn json_err(msg: impl fmt::Display) -> serde_json::Error {
    <serde_json::Error as ser::Error>::custom(msg)
}

macro_rules! plain {
    ($($method:ident($ty:ty);)*) => {
        $(
            fn $method(self, v: $ty) -> Result<Value, serde_json::Error> {
                serde_json::value::Serializer.$method(v)
            }
        )*
    };
}

impl<'a> ser::Serializer for PayloadSerializer<'a> {
    type Ok = Value;
    type Error = serde_json::Error;
    type SerializeSeq = SeqSer<'a>;
    type SerializeTuple = SeqSer<'a>;
    type SerializeTupleStruct = SeqSer<'a>;
    type SerializeTupleVariant = VariantSer<SeqSer<'a>>;
    type SerializeMap = MapSer<'a>;
    type SerializeStruct = MapSer<'a>;
    type SerializeStructVariant = VariantSer<MapSer<'a>>;

    plain! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_i128(i128);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_u128(u128);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_str(&str);
        serialize_unit_struct(&'static str);
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<Value, serde_json::Error> {
        self.bins.push(Bytes::copy_from_slice(v));
        Ok(placeholder(self.bins.len() - 1))
    }

    fn serialize_none(self) -> Result<Value, serde_json::Error> {
        Ok(Value::Null)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, serde_json::Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<Value, serde_json::Error> {
        Ok(Value::Null)
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, serde_json::Error> {
        Ok(Value::String(variant.to_owned()))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Value, serde_json::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, serde_json::Error> {
        let mut o = Map::with_capacity(1);
        o.insert(variant.to_owned(), value.serialize(self)?);
        Ok(Value::Object(o))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSer<'a>, serde_json::Error> {
        Ok(SeqSer { items: Vec::with_capacity(len.unwrap_or(0).min(4096)), bins: self.bins })
    }

    fn serialize_tuple(self, len: usize) -> Result<SeqSer<'a>, serde_json::Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<SeqSer<'a>, serde_json::Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantSer<SeqSer<'a>>, serde_json::Error> {
        Ok(VariantSer { variant, inner: self.serialize_seq(Some(len))? })
    }

    fn serialize_map(self, _: Option<usize>) -> Result<MapSer<'a>, serde_json::Error> {
        Ok(MapSer { map: Map::new(), key: None, bins: self.bins })
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<MapSer<'a>, serde_json::Error> {
        self.serialize_map(None)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<VariantSer<MapSer<'a>>, serde_json::Error> {
        Ok(VariantSer { variant, inner: self.serialize_map(None)? })
    }
}

struct SeqSer<'a> {
    items: Vec<Value>,
    bins: &'a mut Vec<Bytes>,
}

impl SeqSer<'_> {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), serde_json::Error> {
        let v = value.serialize(PayloadSerializer { bins: self.bins })?;
        self.items.push(v);
        Ok(())
    }
}

/// The three sequence traits of serde differ only in the element method's name.
macro_rules! seq_impls {
    ($($trait:ident :: $method:ident;)*) => {
        $(
            impl ser::$trait for SeqSer<'_> {
                type Ok = Value;
                type Error = serde_json::Error;
                fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), serde_json::Error> {
                    self.push(value)
                }
                fn end(self) -> Result<Value, serde_json::Error> {
                    Ok(Value::Array(self.items))
                }
            }
        )*
    };
}

seq_impls! {
    SerializeSeq::serialize_element;
    SerializeTuple::serialize_element;
    SerializeTupleStruct::serialize_field;
}

struct MapSer<'a> {
    map: Map<String, Value>,
    key: Option<String>,
    bins: &'a mut Vec<Bytes>,
}

/// A map key as JSON has it: strings as they are, numbers and booleans as their text.
fn key_string<T: Serialize + ?Sized>(key: &T) -> Result<String, serde_json::Error> {
    match key.serialize(serde_json::value::Serializer)? {
        Value::String(s) => Ok(s),
        v @ (Value::Number(_) | Value::Bool(_)) => Ok(v.to_string()),
        _ => Err(json_err("a map key must be a string, a number or a boolean")),
    }
}

impl ser::SerializeMap for MapSer<'_> {
    type Ok = Value;
    type Error = serde_json::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), serde_json::Error> {
        self.key = Some(key_string(key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), serde_json::Error> {
        let key = self.key.take().ok_or_else(|| json_err("a map value without its key"))?;
        let v = value.serialize(PayloadSerializer { bins: self.bins })?;
        self.map.insert(key, v);
        Ok(())
    }
    fn end(self) -> Result<Value, serde_json::Error> {
        Ok(Value::Object(self.map))
    }
}

impl ser::SerializeStruct for MapSer<'_> {
    type Ok = Value;
    type Error = serde_json::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        let v = value.serialize(PayloadSerializer { bins: self.bins })?;
        self.map.insert(key.to_owned(), v);
        Ok(())
    }
    fn end(self) -> Result<Value, serde_json::Error> {
        Ok(Value::Object(self.map))
    }
}

/// An enum variant with content: `{"Variant": content}`, as serde_json writes it.
struct VariantSer<S> {
    variant: &'static str,
    inner: S,
}

impl<S> VariantSer<S> {
    fn wrap(variant: &'static str, v: Value) -> Value {
        let mut o = Map::with_capacity(1);
        o.insert(variant.to_owned(), v);
        Value::Object(o)
    }
}

impl ser::SerializeTupleVariant for VariantSer<SeqSer<'_>> {
    type Ok = Value;
    type Error = serde_json::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), serde_json::Error> {
        self.inner.push(value)
    }
    fn end(self) -> Result<Value, serde_json::Error> {
        Ok(Self::wrap(self.variant, Value::Array(self.inner.items)))
    }
}

impl ser::SerializeStructVariant for VariantSer<MapSer<'_>> {
    type Ok = Value;
    type Error = serde_json::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        ser::SerializeStruct::serialize_field(&mut self.inner, key, value)
    }
    fn end(self) -> Result<Value, serde_json::Error> {
        Ok(Self::wrap(self.variant, Value::Object(self.inner.map)))
    }
}

// ------------------------------------------------------------------ deserializer

#[derive(Clone, Copy)]
struct PayloadDeserializer<'a> {
    value: &'a Value,
    bins: &'a [Bytes],
}

impl<'a> PayloadDeserializer<'a> {
    /// The attachment a placeholder names, if `value` is one.
    fn attachment(&self) -> Result<Option<&'a Bytes>, serde_json::Error> {
        match placeholder_num(self.value) {
            None => Ok(None),
            Some(num) => num
                .and_then(|i| self.bins.get(i))
                .map(Some)
                .ok_or_else(|| <serde_json::Error as de::Error>::custom("placeholder names no attachment")),
        }
    }
}

struct SeqAccess<'a> {
    iter: std::slice::Iter<'a, Value>,
    bins: &'a [Bytes],
}

impl<'de, 'a> de::SeqAccess<'de> for SeqAccess<'a> {
    type Error = serde_json::Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, serde_json::Error> {
        match self.iter.next() {
            Some(value) => seed.deserialize(PayloadDeserializer { value, bins: self.bins }).map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct MapAccess<'a> {
    iter: serde_json::map::Iter<'a>,
    value: Option<&'a Value>,
    bins: &'a [Bytes],
}

impl<'de, 'a> de::MapAccess<'de> for MapAccess<'a> {
    type Error = serde_json::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, serde_json::Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                let key: de::value::StrDeserializer<'_, serde_json::Error> = k.as_str().into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, serde_json::Error> {
        let value = self.value.take().ok_or_else(|| <serde_json::Error as de::Error>::custom("value without key"))?;
        seed.deserialize(PayloadDeserializer { value, bins: self.bins })
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct EnumAccess<'a> {
    variant: &'a str,
    value: Option<&'a Value>,
    bins: &'a [Bytes],
}

impl<'de, 'a> de::EnumAccess<'de> for EnumAccess<'a> {
    type Error = serde_json::Error;
    type Variant = VariantAccess<'a>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantAccess<'a>), serde_json::Error> {
        let key: de::value::StrDeserializer<'_, serde_json::Error> = self.variant.into_deserializer();
        let v = seed.deserialize(key)?;
        Ok((v, VariantAccess { value: self.value, bins: self.bins }))
    }
}

struct VariantAccess<'a> {
    value: Option<&'a Value>,
    bins: &'a [Bytes],
}

impl<'de> de::VariantAccess<'de> for VariantAccess<'_> {
    type Error = serde_json::Error;
    fn unit_variant(self) -> Result<(), serde_json::Error> {
        match self.value {
            None | Some(Value::Null) => Ok(()),
            Some(_) => Err(<serde_json::Error as de::Error>::custom("expected a unit variant")),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, serde_json::Error> {
        let value = self.value.unwrap_or(&Value::Null);
        seed.deserialize(PayloadDeserializer { value, bins: self.bins })
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, serde_json::Error> {
        let value = self.value.unwrap_or(&Value::Null);
        de::Deserializer::deserialize_seq(PayloadDeserializer { value, bins: self.bins }, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        let value = self.value.unwrap_or(&Value::Null);
        de::Deserializer::deserialize_map(PayloadDeserializer { value, bins: self.bins }, visitor)
    }
}

impl<'de, 'a> de::Deserializer<'de> for PayloadDeserializer<'a> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_str(s),
            Value::Array(a) => visitor.visit_seq(SeqAccess { iter: a.iter(), bins: self.bins }),
            Value::Object(o) => visitor.visit_map(MapAccess { iter: o.iter(), value: None, bins: self.bins }),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.attachment()? {
            Some(b) => visitor.visit_bytes(b),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.attachment()? {
            Some(b) => visitor.visit_byte_buf(b.to_vec()),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        // `Vec<u8>` asks for a sequence: give it the attachment's bytes.
        match self.attachment()? {
            Some(b) => visitor.visit_seq(de::value::SeqDeserializer::new(b.iter().copied())),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        match self.value {
            Value::String(s) => visitor.visit_enum(EnumAccess { variant: s, value: None, bins: self.bins }),
            Value::Object(o) if o.len() == 1 => {
                let Some((k, v)) = o.iter().next() else {
                    return Err(<serde_json::Error as de::Error>::custom("empty enum object"));
                };
                visitor.visit_enum(EnumAccess { variant: k, value: Some(v), bins: self.bins })
            }
            _ => Err(<serde_json::Error as de::Error>::custom("expected an enum: a string or a one-key object")),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        unit unit_struct tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Upload {
        name: String,
        file: Bytes,
        parts: Vec<Bytes>,
        meta: Option<Inner>,
        kind: Kind,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        thumb: Bytes,
        size: u64,
        raw: Vec<u8>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Kind {
        Plain,
        Chunk(Bytes),
        Range { start: u32, data: Bytes },
    }

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn bytes_anywhere_round_trip() {
        let up = Upload {
            name: "a".into(),
            file: b(b"file"),
            parts: vec![b(b"p0"), b(b""), b(b"p2")],
            meta: Some(Inner { thumb: b(b"\x00\xff"), size: 7, raw: vec![1, 2] }),
            kind: Kind::Range { start: 3, data: b(b"range") },
        };
        let (v, bins) = to_payload(&(1, &up, "x")).unwrap();
        let ph = |n: usize| json!({"_placeholder": true, "num": n});
        assert_eq!(
            v,
            json!([1, {
                "name": "a", "file": ph(0), "parts": [ph(1), ph(2), ph(3)],
                "meta": {"thumb": ph(4), "size": 7, "raw": [1, 2]},
                "kind": {"Range": {"start": 3, "data": ph(5)}}
            }, "x"])
        );
        assert_eq!(bins.len(), 6);
        assert_eq!(bins[5], b(b"range"));
        let back: (u8, Upload, String) = from_payload(&v, &bins).unwrap();
        assert_eq!(back.1, up);
        // A Value keeps the placeholders.
        let raw: Value = from_payload(&v, &bins).unwrap();
        assert_eq!(raw, v);
        // Vec<u8> fields read an attachment too.
        let (v, bins) = to_payload(&Kind::Chunk(b(b"c"))).unwrap();
        assert_eq!(from_payload::<Kind>(&v, &bins).unwrap(), Kind::Chunk(b(b"c")));
        let raw: Vec<u8> = from_payload(&ph(0), &[b(b"\x01\x02")]).unwrap();
        assert_eq!(raw, vec![1, 2]);
        assert_eq!(from_payload::<Kind>(&json!("Plain"), &[]).unwrap(), Kind::Plain);
    }

    #[test]
    fn a_placeholder_without_its_attachment_is_an_error() {
        let v = json!({"_placeholder": true, "num": 3});
        assert!(from_payload::<Bytes>(&v, &[b(b"x")]).is_err());
    }

    #[test]
    fn placing_attachments() {
        // No placeholders: appended.
        let mut args = vec![json!("a")];
        place_attachments(&mut args, 2).unwrap();
        assert_eq!(args[2], json!({"_placeholder": true, "num": 1}));
        // Placeholders in place (a received event sent on): kept.
        let mut args = vec![json!({"x": {"_placeholder": true, "num": 1}}), json!({"_placeholder": true, "num": 0})];
        place_attachments(&mut args, 2).unwrap();
        assert_eq!(args.len(), 2);
        // Wrong: a duplicate, a missing one, one out of range.
        for bad in [
            vec![json!({"_placeholder": true, "num": 0}), json!({"_placeholder": true, "num": 0})],
            vec![json!({"_placeholder": true, "num": 0})],
            vec![json!({"_placeholder": true, "num": 0}), json!({"_placeholder": true, "num": 5})],
        ] {
            let mut args = bad;
            assert!(place_attachments(&mut args, 2).is_err());
        }
    }
}
