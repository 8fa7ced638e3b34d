//! S3 event notifications as they arrive on the ingress queue: several records per message,
//! form-URL-encoded keys, and the `s3:TestEvent` S3 sends when the notification is configured.
//!
//! Nothing is parsed by hand: serde reads the JSON into the few fields we use and
//! `percent-encoding` decodes the key. A crate of event types (`aws_lambda_events`, feature
//! `s3`) would replace only these private structs, with the full record (request parameters,
//! owner identities, `chrono` times) we never read; decoding the key would stay ours.

use serde::Deserialize;

/// One uploaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCreated {
    /// Bucket name.
    pub bucket: String,
    /// Decoded key (spaces, `+`, unicode, `/` as S3 stores them).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// eTag without quotes; empty if the event has none.
    pub etag: String,
    /// Version id on versioned buckets.
    pub version_id: Option<String>,
}

/// What an ingress message holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// S3's test message: nothing to do but delete it.
    Test,
    /// Created objects (other event kinds are dropped).
    Created(Vec<ObjectCreated>),
}

/// An ingress message that is not an S3 notification.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    /// Not JSON or not shaped like an S3 event.
    #[error("not an S3 event notification: {0}")]
    Malformed(#[from] serde_json::Error),
    /// JSON without `Records` and not a test event.
    #[error("S3 event notification without `Records`")]
    NoRecords,
    /// A key whose percent-encoding does not decode to UTF-8.
    #[error("object key `{0}` does not decode to UTF-8")]
    BadKey(String),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Records")]
    records: Option<Vec<Record>>,
    #[serde(rename = "Event")]
    event: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: BucketEntity,
    object: ObjectEntity,
}

#[derive(Deserialize)]
struct BucketEntity {
    name: String,
}

#[derive(Deserialize)]
struct ObjectEntity {
    key: String,
    #[serde(default)]
    size: u64,
    #[serde(rename = "eTag", default)]
    etag: Option<String>,
    #[serde(rename = "versionId", default)]
    version_id: Option<String>,
}

/// Parses an ingress message body.
pub fn parse(body: &str) -> Result<Notification, NotificationError> {
    let envelope: Envelope = serde_json::from_str(body)?;
    let Some(records) = envelope.records else {
        return match envelope.event.as_deref() {
            Some("s3:TestEvent") => Ok(Notification::Test),
            _ => Err(NotificationError::NoRecords),
        };
    };
    let mut created = Vec::with_capacity(records.len());
    for record in records {
        if !record.event_name.starts_with("ObjectCreated") {
            continue;
        }
        let key = decode_key(&record.s3.object.key)?;
        created.push(ObjectCreated {
            bucket: record.s3.bucket.name,
            key,
            size: record.s3.object.size,
            etag: record
                .s3
                .object
                .etag
                .unwrap_or_default()
                .trim_matches('"')
                .to_string(),
            version_id: record.s3.object.version_id.filter(|v| !v.is_empty()),
        });
    }
    Ok(Notification::Created(created))
}

/// Decodes a key as S3 sends it: form-URL-encoded, `+` for space.
pub fn decode_key(raw: &str) -> Result<String, NotificationError> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| NotificationError::BadKey(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_event_is_recognised() {
        let body = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-01-01T00:00:00Z","Bucket":"in","RequestId":"x","HostId":"y"}"#;
        assert_eq!(parse(body).unwrap(), Notification::Test);
    }

    #[test]
    fn several_records_with_encoded_keys() {
        let body = r#"{"Records":[
            {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"in"},"object":{"key":"my+holiday%2Fclip+%2B1.mp4","size":10,"eTag":"\"abc\""}}},
            {"eventName":"ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"in"},"object":{"key":"caf%C3%A9/%E6%97%A5%E6%9C%AC.mov","size":0,"eTag":"def"}}},
            {"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"in"},"object":{"key":"gone.mp4"}}}
        ]}"#;
        let Notification::Created(objects) = parse(body).unwrap() else {
            panic!("expected records");
        };
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].key, "my holiday/clip +1.mp4");
        assert_eq!(objects[0].etag, "abc");
        assert_eq!(objects[1].key, "café/日本.mov");
        assert_eq!(objects[1].size, 0);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(matches!(
            parse("not json"),
            Err(NotificationError::Malformed(_))
        ));
        assert!(matches!(parse("{}"), Err(NotificationError::NoRecords)));
        assert!(matches!(
            parse(
                r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"%FF"}}}]}"#
            ),
            Err(NotificationError::BadKey(_))
        ));
    }
}
