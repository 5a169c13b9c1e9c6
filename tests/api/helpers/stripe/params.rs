//! Stripe's form-encoded parameters: nested keys (`metadata[user_id]`,
//! `line_items[0][price]`, `expand[]`) read back into values, after a check
//! against the parameters an endpoint takes, as Stripe refuses unknown ones.

use serde_json::{Map, Value};

use super::api::ApiError;

/// The parameters of one request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Params<'a> {
    pairs: &'a [(String, String)],
}

/// `a[b][c]` as `["a", "b", "c"]`, `expand[]` as `["expand", ""]`.
fn segments(key: &str) -> Vec<&str> {
    let (head, mut rest) = key
        .split_once('[')
        .map_or((key, ""), |(head, _)| (head, &key[head.len()..]));
    let mut segments = vec![head];
    while let Some(inner) = rest.strip_prefix('[') {
        let Some((segment, after)) = inner.split_once(']') else {
            break;
        };
        segments.push(segment);
        rest = after;
    }
    segments
}

/// Whether `key` is `pattern` or below it; a `*` in the pattern stands for
/// any one segment (`line_items[*][price]`).
fn covers(pattern: &str, key: &str) -> bool {
    let pattern = segments(pattern);
    let key = segments(key);
    key.len() >= pattern.len() && pattern.iter().zip(&key).all(|(p, k)| *p == "*" || p == k)
}

impl<'a> Params<'a> {
    /// The parameters, if every one is covered by a pattern of `accepted`.
    pub(super) fn accepted_by(
        pairs: &'a [(String, String)],
        accepted: &[&str],
    ) -> Result<Params<'a>, ApiError> {
        match pairs
            .iter()
            .find(|(key, _)| !accepted.iter().any(|p| covers(p, key)))
        {
            Some((key, _)) => Err(ApiError::UnknownParam(key.clone())),
            None => Ok(Params { pairs }),
        }
    }

    /// The value of `key`; the last one if it is given twice, as Stripe reads it.
    pub(super) fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn required(&self, key: &str) -> Result<&'a str, ApiError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::MissingParam(key.to_owned()))
    }

    pub(super) fn boolean(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ApiError::invalid(key, None, format!("Invalid boolean: {other}"))),
        }
    }

    pub(super) fn integer(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::invalid(
                        key,
                        Some("parameter_invalid_integer"),
                        format!("Invalid integer: {v}"),
                    )
                })
            })
            .transpose()
    }

    /// An absolute http(s) URL, as Stripe wants its redirect URLs.
    pub(super) fn url(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            Some(value) => match url::Url::parse(value) {
                Ok(url) if ["http", "https"].contains(&url.scheme()) => Ok(Some(value)),
                _ => Err(ApiError::invalid(
                    key,
                    Some("url_invalid"),
                    "Not a valid URL".to_owned(),
                )),
            },
            None => Ok(None),
        }
    }

    pub(super) fn email(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            Some(value) if !value.contains('@') || value.contains(char::is_whitespace) => {
                Err(ApiError::invalid(
                    key,
                    Some("email_invalid"),
                    format!("Invalid email address: {value}"),
                ))
            }
            other => Ok(other),
        }
    }

    /// The values of `key[]=…` or `key[0]=…`, in order.
    pub(super) fn list(&self, key: &str) -> Vec<&'a str> {
        self.pairs
            .iter()
            .filter(|(k, _)| {
                let segments = segments(k);
                segments.len() == 2 && segments[0] == key
            })
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `prefix[key]=value` pairs as metadata, within Stripe's limits: 50
    /// keys of up to 40 characters, values of up to 500.
    pub(super) fn metadata(&self, prefix: &str) -> Result<Map<String, Value>, ApiError> {
        let mut metadata = Map::new();
        for (key, value) in self.pairs {
            let Some(name) = key
                .strip_prefix(prefix)
                .and_then(|k| k.strip_prefix('['))
                .and_then(|k| k.strip_suffix(']'))
            else {
                continue;
            };
            if name.chars().count() > 40 || value.chars().count() > 500 {
                return Err(ApiError::invalid(
                    key,
                    None,
                    "Metadata keys can be up to 40 characters long and values up to 500 characters long."
                        .to_owned(),
                ));
            }
            metadata.insert(name.to_owned(), Value::String(value.clone()));
        }
        if metadata.len() > 50 {
            return Err(ApiError::invalid(
                prefix,
                None,
                "Metadata can have up to 50 keys.".to_owned(),
            ));
        }
        Ok(metadata)
    }

    /// The indices given for `key[N][…]`, sorted, without repeats.
    pub(super) fn indices(&self, key: &str) -> Vec<&'a str> {
        let mut indices: Vec<&str> = self
            .pairs
            .iter()
            .filter_map(|(k, _)| {
                let segments = segments(k);
                (segments.len() > 1 && segments[0] == key).then(|| {
                    let index = &k[key.len() + 1..];
                    &index[..index.find(']').unwrap_or(index.len())]
                })
            })
            .collect();
        indices.sort_unstable();
        indices.dedup();
        indices
    }
}
