//! S3's answer to a read of a missing key, as AWS gives it and moto does not: without
//! `s3:ListBucket` on the bucket, GetObject and HeadObject of a missing key answer 403
//! AccessDenied, not 404 NoSuchKey ("Permissions", GetObject, Amazon S3 API Reference,
//! https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html). moto 5.2.1 answers
//! 404 whatever the caller's policy says, so code that treats 404 as "missing" would pass
//! locally and fail on AWS. This interceptor sits on a service's S3 client and turns moto's
//! 404 into AWS's 403 when that service's template policy lacks `s3:ListBucket`.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use framefleet_provision::policy::{decide, Decision, PolicyDocument};

/// Makes a missing key look as it does on AWS to a caller with `policies`.
#[derive(Debug, Clone)]
pub struct MissingKeyAsOnAws {
    policies: Vec<PolicyDocument>,
}

impl MissingKeyAsOnAws {
    /// For a caller whose identity policies are `policies` (the template's, not moto's copy).
    pub fn new(policies: Vec<PolicyDocument>) -> Self {
        Self { policies }
    }
}

/// The bucket of an object read in flight, remembered between transmit and deserialisation.
#[derive(Debug, Clone)]
struct ObjectRead {
    bucket: String,
}

impl Storable for ObjectRead {
    type Storer = StoreReplace<Self>;
}

impl Intercept for MissingKeyAsOnAws {
    fn name(&self) -> &'static str {
        "MissingKeyAsOnAws"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let method = request.method();
        // Path-style object reads: GET or HEAD of /bucket/key without a sub-resource query.
        if method != "GET" && method != "HEAD" {
            return Ok(());
        }
        let uri = request.uri();
        let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
        let path = after_scheme
            .split_once('/')
            .map_or("", |(_, path)| path)
            .split('?')
            .next()
            .unwrap_or_default();
        let mut segments = path.splitn(2, '/');
        if let (Some(bucket), Some(key)) = (segments.next(), segments.next()) {
            if !bucket.is_empty() && !key.is_empty() {
                cfg.interceptor_state().store_put(ObjectRead {
                    bucket: bucket.to_string(),
                });
            }
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(read) = cfg.load::<ObjectRead>().cloned() else {
            return Ok(());
        };
        let response = context.response_mut();
        if response.status().as_u16() != 404 {
            return Ok(());
        }
        let bucket_arn = format!("arn:aws:s3:::{}", read.bucket);
        if decide(&self.policies, "s3:ListBucket", &bucket_arn) == Decision::Allowed {
            return Ok(());
        }
        *response.status_mut() = 403.try_into()?;
        response.headers_mut().remove("content-length");
        *response.body_mut() = SdkBody::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
             <Message>Access Denied</Message></Error>",
        );
        Ok(())
    }
}
