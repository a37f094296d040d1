//! `OsString` fields of [`CommandConfig`](crate::CommandConfig) in config files: plain
//! strings (UTF-8), where serde's own form for `OsString` is a platform-tagged byte list.

use std::ffi::OsString;

use serde::{Deserialize, Deserializer, Serializer};

fn text<E: serde::ser::Error>(s: &OsString) -> Result<&str, E> {
    s.to_str().ok_or_else(|| E::custom(format!("{} is not UTF-8", s.to_string_lossy())))
}

/// One `OsString` as a string.
pub(crate) mod one {
    use super::{text, Deserialize, Deserializer, OsString, Serializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OsString, D::Error> {
        String::deserialize(d).map(OsString::from)
    }

    pub(crate) fn serialize<S: Serializer>(v: &OsString, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(text(v)?)
    }
}

/// `Option<OsString>` as an optional string.
pub(crate) mod option {
    use super::{text, Deserialize, Deserializer, OsString, Serializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OsString>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(OsString::from))
    }

    #[allow(clippy::ref_option)] // serde's `with` passes `&Option<_>`
    pub(crate) fn serialize<S: Serializer>(v: &Option<OsString>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(text::<S::Error>(v)?),
            None => s.serialize_none(),
        }
    }
}

/// `Vec<OsString>` as a list of strings.
pub(crate) mod list {
    use super::{text, Deserialize, Deserializer, OsString, Serializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OsString>, D::Error> {
        Ok(Vec::<String>::deserialize(d)?.into_iter().map(OsString::from).collect())
    }

    pub(crate) fn serialize<S: Serializer>(v: &[OsString], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(text::<S::Error>).collect::<Result<Vec<_>, _>>()?)
    }
}

/// Environment pairs as an object of names and values.
pub(crate) mod env {
    use std::collections::BTreeMap;

    use super::{text, Deserialize, Deserializer, OsString, Serializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(OsString, OsString)>, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(d)?;
        Ok(map.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    pub(crate) fn serialize<S: Serializer>(v: &[(OsString, OsString)], s: S) -> Result<S::Ok, S::Error> {
        // A later pair wins, as on a spawn.
        let mut map = BTreeMap::new();
        for (k, value) in v {
            map.insert(text::<S::Error>(k)?, text::<S::Error>(value)?);
        }
        s.collect_map(map)
    }
}
