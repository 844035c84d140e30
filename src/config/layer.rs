//! The serde side of the environment layer: a `Deserializer` over the
//! merged settings tree in which some leaves are environment text.
//!
//! # What this module owns
//! * [`Layer`]: walks a YAML value tree (the file's settings, complete with
//!   defaults) and, at every leaf whose dotted key has an environment value,
//!   hands the field's `Deserialize` impl an [`EnvStr`] instead of the tree's
//!   value. The field's own type therefore decides how text is parsed: no
//!   per-key or per-type table exists in the loader.
//! * [`EnvStr`]: a `Deserializer` for one environment string. Integers are
//!   decimal digits only (`+5`, `-1`, `1.5`, `""` are rejected for unsigned
//!   fields; `-` is allowed for signed ones); booleans are true/false,
//!   yes/no, 1/0 in any case; an empty value is `None` for `Option` fields
//!   (which is how `DCACHE_HTTP_PORT=` clears the legacy port and
//!   `DCACHE_NODE_ID=` clears an id); strings, paths and enum names are the
//!   text as given (enums decide their own case rules); sequences are
//!   comma-separated.
//! * [`DeError`]: an error that remembers the dotted key it happened at and
//!   the `expected` text of the failing type, so the loader can say
//!   `invalid value "abc" for raft.rpc_timeout_ms (from
//!   DCACHE_RAFT_RPC_TIMEOUT_MS): expected an unsigned integer`.
//!
//! # Invariants
//! The key path attached to an error is the deepest map key at which it
//! happened, i.e. the setting itself, never its section.
//!
//! # What it does not do
//! It does not decide which keys exist or which variables are known (the
//! loader does, before deserializing), and it does not report YAML line
//! numbers: the file was already deserialized from its text, with positions,
//! before it is turned into the tree read here.

use serde::de::value::{BorrowedStrDeserializer, SeqDeserializer};
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Unexpected, Visitor,
};
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// `expected` text for unsigned integers of 64 bits.
pub(super) const EXPECT_UINT: &str = "an unsigned integer";

// ---------------------------------------------------------------------------
// Error
// ---------------------------------------------------------------------------

/// A deserialization failure at a known place.
#[derive(Debug)]
pub(super) struct DeError {
    /// Dotted key of the setting that failed, if inside a mapping.
    pub path: Option<String>,
    /// The full message, as serde phrases it.
    pub message: String,
    /// What the failing type expected, when serde said so.
    pub expected: Option<String>,
}

impl DeError {
    fn at(mut self, path: &str) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_string());
        }
        self
    }

    fn yaml(e: serde_yaml_ng::Error) -> Self {
        de::Error::custom(e)
    }

    fn expecting(message: String, expected: String) -> Self {
        DeError {
            path: None,
            message,
            expected: Some(expected),
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            path: None,
            message: msg.to_string(),
            expected: None,
        }
    }
    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::expecting(
            format!("invalid type: {unexp}, expected {exp}"),
            exp.to_string(),
        )
    }
    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::expecting(
            format!("invalid value: {unexp}, expected {exp}"),
            exp.to_string(),
        )
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let exp = format!("one of {}", expected.join(", "));
        DeError::expecting(format!("unknown variant `{variant}`, expected {exp}"), exp)
    }
}

// ---------------------------------------------------------------------------
// One environment value
// ---------------------------------------------------------------------------

/// One environment variable's text, deserialized as whatever the field wants.
#[derive(Clone, Copy)]
pub(super) struct EnvStr<'de>(pub &'de str);

impl EnvStr<'_> {
    /// Decimal digits, optionally after a `-` when `signed`; then `FromStr`.
    fn number<T: FromStr>(self, signed: bool, expected: &'static str) -> Result<T, DeError> {
        let s = self.0;
        let digits = if signed {
            s.strip_prefix('-').unwrap_or(s)
        } else {
            s
        };
        if !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = s.parse()
        {
            return Ok(n);
        }
        Err(de::Error::invalid_value(Unexpected::Str(s), &expected))
    }
}

macro_rules! env_numbers {
    ($($method:ident: $t:ty, $signed:expr, $visit:ident, $expected:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            visitor.$visit(self.number::<$t>($signed, $expected)?)
        }
    )*};
}

impl<'de> Deserializer<'de> for EnvStr<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match super::parse_bool(self.0) {
            Some(b) => visitor.visit_bool(b),
            None => Err(de::Error::invalid_value(
                Unexpected::Str(self.0),
                &super::EXPECT_BOOL,
            )),
        }
    }

    env_numbers! {
        deserialize_u8: u8, false, visit_u8, "an unsigned integer 0-255";
        deserialize_u16: u16, false, visit_u16, "an unsigned integer 0-65535";
        deserialize_u32: u32, false, visit_u32, "an unsigned integer 0-4294967295";
        deserialize_u64: u64, false, visit_u64, EXPECT_UINT;
        deserialize_u128: u128, false, visit_u128, EXPECT_UINT;
        deserialize_i8: i8, true, visit_i8, "an integer -128-127";
        deserialize_i16: i16, true, visit_i16, "an integer -32768-32767";
        deserialize_i32: i32, true, visit_i32, "a 32-bit integer";
        deserialize_i64: i64, true, visit_i64, "an integer";
        deserialize_i128: i128, true, visit_i128, "an integer";
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Plain decimal notation only: no "inf", "NaN" or leading "+".
        let s = self.0;
        let plain = s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'e' | b'E'));
        match s.parse::<f64>() {
            Ok(x) if plain => visitor.visit_f64(x),
            _ => Err(de::Error::invalid_value(Unexpected::Str(s), &"a number")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.0.is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.0.is_empty() {
            visitor.visit_unit()
        } else {
            Err(de::Error::invalid_value(
                Unexpected::Str(self.0),
                &"an empty value",
            ))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let items = self
            .0
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(EnvStr);
        let mut seq = SeqDeserializer::new(items);
        let value = visitor.visit_seq(&mut seq)?;
        seq.end()?;
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        BorrowedStrDeserializer::new(self.0).deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf map struct identifier
    }
}

impl<'de> IntoDeserializer<'de, DeError> for EnvStr<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

// ---------------------------------------------------------------------------
// The merged tree
// ---------------------------------------------------------------------------

/// A node of the settings tree, with the environment values that override
/// its leaves (dotted key → text).
pub(super) struct Layer<'de> {
    pub value: &'de Value,
    pub path: String,
    pub env: &'de BTreeMap<String, String>,
}

impl<'de> Layer<'de> {
    /// The environment text for this exact key, if any.
    fn env_text(&self) -> Option<&'de str> {
        self.env.get(&self.path).map(String::as_str)
    }

    /// A mapping (or a null section, which means "all defaults") whose
    /// children are visited as `Layer`s so env overrides inside it apply.
    fn is_section(&self) -> bool {
        matches!(self.value, Value::Mapping(_) | Value::Null)
    }

    fn visit_section<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let entries = match self.value {
            Value::Mapping(m) => Some(m.iter()),
            _ => None,
        };
        visitor.visit_map(Section {
            entries: entries.into_iter().flatten(),
            pending: None,
            path: self.path,
            env: self.env,
        })
    }
}

/// Forwards a `deserialize_*` method to the env text at this key if there is
/// one, else to the tree's value.
macro_rules! leaf {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, DeError> {
            match self.env_text() {
                Some(text) => EnvStr(text).$method($($arg,)* visitor),
                None => self.value.$method($($arg,)* visitor).map_err(DeError::yaml),
            }
        }
    )*};
}

/// Like [`leaf!`], but a mapping is visited as a section.
macro_rules! section {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, DeError> {
            match self.env_text() {
                Some(text) => EnvStr(text).$method($($arg,)* visitor),
                None if self.is_section() => self.visit_section(visitor),
                None => self.value.$method($($arg,)* visitor).map_err(DeError::yaml),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for Layer<'de> {
    type Error = DeError;

    section! {
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.env_text() {
            Some(text) => EnvStr(text).deserialize_any(visitor),
            // Not a null: a type that asks for "anything" at a null leaf
            // wants to see the null, not an empty section.
            None if matches!(self.value, Value::Mapping(_)) => self.visit_section(visitor),
            None => self.value.deserialize_any(visitor).map_err(DeError::yaml),
        }
    }

    leaf! {
        deserialize_bool();
        deserialize_i8(); deserialize_i16(); deserialize_i32(); deserialize_i64(); deserialize_i128();
        deserialize_u8(); deserialize_u16(); deserialize_u32(); deserialize_u64(); deserialize_u128();
        deserialize_f32(); deserialize_f64();
        deserialize_char(); deserialize_str(); deserialize_string();
        deserialize_bytes(); deserialize_byte_buf();
        deserialize_option(); deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }
}

/// The entries of one section, each child deserialized as a [`Layer`].
struct Section<'de, I> {
    entries: I,
    /// Dotted key and value of the entry whose key was just read.
    pending: Option<(String, &'de Value)>,
    path: String,
    env: &'de BTreeMap<String, String>,
}

impl<'de, I: Iterator<Item = (&'de Value, &'de Value)>> MapAccess<'de> for Section<'de, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let Some(key) = key.as_str() else {
            return Err(<DeError as de::Error>::invalid_type(
                Unexpected::Other("non-string key"),
                &"a key name",
            )
            .at(&self.path));
        };
        let path = if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        };
        let k = seed
            .deserialize(BorrowedStrDeserializer::new(key))
            .map_err(|e: DeError| e.at(&path))?;
        self.pending = Some((path, value));
        Ok(Some(k))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        let (path, value) = self
            .pending
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value requested before its key"))?;
        let layer = Layer {
            value,
            path: path.clone(),
            env: self.env,
        };
        seed.deserialize(layer).map_err(|e| e.at(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    /// Field types that no setting has yet, so a future one works from the
    /// environment too.
    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        n: i32,
        f: f64,
        list: Vec<String>,
        name: Option<String>,
        c: char,
        mode: Mode,
        inner: Inner,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    enum Mode {
        #[default]
        Fast,
        Slow,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Inner {
        flag: bool,
        small: u8,
    }

    fn with(pairs: &[(&str, &str)]) -> Result<Sample, DeError> {
        let base = Sample {
            name: Some("file".into()),
            ..Sample::default()
        };
        let tree = serde_yaml_ng::to_value(&base).unwrap();
        let env: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Sample::deserialize(Layer {
            value: &tree,
            path: String::new(),
            env: &env,
        })
    }

    #[test]
    fn the_field_type_parses_the_text() {
        let s = with(&[
            ("n", "-5"),
            ("f", "1.5"),
            ("list", "a, b,c"),
            ("c", "z"),
            ("mode", "Slow"),
            ("inner.flag", "YES"),
            ("inner.small", "255"),
        ])
        .unwrap();
        assert_eq!((s.n, s.f, s.c), (-5, 1.5, 'z'));
        assert_eq!(s.list, ["a", "b", "c"]);
        assert_eq!(s.mode, Mode::Slow);
        assert_eq!(
            s.inner,
            Inner {
                flag: true,
                small: 255
            }
        );
        // Untouched keys keep the tree's value.
        assert_eq!(s.name.as_deref(), Some("file"));

        assert_eq!(with(&[("name", "")]).unwrap().name, None);
        assert!(with(&[("list", "")]).unwrap().list.is_empty());
    }

    #[test]
    fn failures_name_the_key_and_what_was_expected() {
        for (key, text, expected) in [
            ("n", "+5", "a 32-bit integer"),
            ("n", "", "a 32-bit integer"),
            ("f", "inf", "a number"),
            ("inner.small", "256", "an unsigned integer 0-255"),
            ("inner.flag", "maybe", "a boolean (true/false, yes/no, 1/0)"),
            ("mode", "slow", "one of Fast, Slow"),
            ("c", "zz", "a character"),
        ] {
            let e = with(&[(key, text)]).unwrap_err();
            assert_eq!(e.path.as_deref(), Some(key), "{e}");
            assert_eq!(e.expected.as_deref(), Some(expected), "{key}={text:?}: {e}");
        }
    }
}
