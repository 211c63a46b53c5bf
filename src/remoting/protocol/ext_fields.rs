//! `ExtFields`: the custom-header map, kept in wire order.

use std::fmt::{self, Display};
use std::str::FromStr;

use super::CodecError;

/// The `extFields` of a command: string keys to string values, in the order they were inserted
/// or decoded, so a decoded frame re-encodes byte for byte.
///
/// Headers hold a dozen entries at most, so lookups scan a vector instead of hashing.
///
/// `Debug` prints the values of the ACL fields `Signature` and `SecurityToken` as
/// `<redacted>`, so logging a command never leaks them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ExtFields {
    entries: Vec<(String, String)>,
}

impl ExtFields {
    /// An empty map.
    pub fn new() -> Self {
        ExtFields {
            entries: Vec::new(),
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key`, replacing an existing value in place (so a later duplicate wins, as in Java).
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Sets `key` to `value.to_string()`.
    pub fn put(&mut self, key: &str, value: impl Display) {
        self.insert(key, value.to_string());
    }

    /// Sets `key` when `value` is `Some`, as Java skips null fields.
    pub fn put_opt<T: Display>(&mut self, key: &str, value: Option<T>) {
        if let Some(v) = value {
            self.put(key, v);
        }
    }

    /// Removes `key` and returns its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A required string field.
    pub fn required(&self, key: &'static str) -> Result<&str, CodecError> {
        self.get(key).ok_or(CodecError::MissingField(key))
    }

    /// A required field parsed with `FromStr` (Java `parseInt`, `parseLong`).
    pub fn required_parse<T: FromStr>(&self, key: &'static str) -> Result<T, CodecError> {
        let v = self.required(key)?;
        v.trim().parse().map_err(|_| CodecError::InvalidField {
            field: key,
            value: v.to_owned(),
        })
    }

    /// An optional field parsed with `FromStr`; present but unparsable is an error.
    pub fn optional_parse<T: FromStr>(&self, key: &'static str) -> Result<Option<T>, CodecError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| CodecError::InvalidField {
                    field: key,
                    value: v.to_owned(),
                }),
        }
    }

    /// A boolean read as Java's `Boolean.parseBoolean`: only `"true"` (any case) is true.
    pub fn bool_or_false(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// Keys whose values `Debug` hides: a signature may be replayed, a token is a credential.
const REDACTED_KEYS: [&str; 2] = ["Signature", "SecurityToken"];

impl fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<(&str, &str)> = self
            .iter()
            .map(|(k, v)| {
                if REDACTED_KEYS.contains(&k) {
                    (k, "<redacted>")
                } else {
                    (k, v)
                }
            })
            .collect();
        f.debug_struct("ExtFields")
            .field("entries", &entries)
            .finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = ExtFields::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_signature_and_the_token() {
        let fields: ExtFields = [
            ("AccessKey", "ak"),
            ("Signature", "c2lnbmF0dXJl"),
            ("SecurityToken", "tok-123"),
            ("topic", "T"),
        ]
        .into_iter()
        .collect();
        let text = format!("{fields:?}");
        assert!(
            !text.contains("c2lnbmF0dXJl") && !text.contains("tok-123"),
            "{text}"
        );
        assert!(text.contains("\"ak\"") && text.contains("\"T\""), "{text}");
        assert_eq!(text.matches("<redacted>").count(), 2, "{text}");
    }
}
