//! The price table (`[pricing]` in the dispatcher's and the worker's settings) and what a
//! job's [`Usage`] costs under it. Defaults are AWS list prices for us-east-1 (N. Virginia),
//! on-demand, without free tiers, as read on [`PriceTable::read_on`] (checked that day against
//! published copies of the AWS pricing pages cited on each field, not a live Price List API
//! query); prices change, so the manifest carries the date next to every estimate.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::usage::Usage;

/// Prices in USD. Each field says its unit and where the default comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceTable {
    /// The day (YYYY-MM-DD) these prices were read, copied into every manifest's cost.
    pub read_on: String,
    /// S3 Standard PUT, COPY, POST, LIST requests, USD per 1,000 requests ("Amazon S3
    /// pricing", Requests & data retrievals, <https://aws.amazon.com/s3/pricing/>): 0.005.
    pub s3_put_per_1000: f64,
    /// S3 Standard GET, SELECT and all other requests, USD per 1,000 requests (same page):
    /// 0.0004.
    pub s3_get_per_1000: f64,
    /// SQS standard queue requests, USD per million requests beyond the free tier; every
    /// 64 KB chunk of a payload is billed as one request ("Amazon SQS pricing",
    /// <https://aws.amazon.com/sqs/pricing/>): 0.40.
    pub sqs_per_million: f64,
    /// DynamoDB on-demand write request units, USD per million (Standard table class, "Amazon
    /// DynamoDB pricing for on-demand capacity",
    /// <https://aws.amazon.com/dynamodb/pricing/on-demand/>): 0.625. A transactional write
    /// takes 2 units per item per KB.
    pub dynamodb_write_per_million: f64,
    /// DynamoDB on-demand read request units, USD per million (same page): 0.125. A strongly
    /// consistent read of up to 4 KB takes 1 unit.
    pub dynamodb_read_per_million: f64,
    /// Fargate Linux/ARM (Graviton), USD per vCPU-hour ("AWS Fargate pricing",
    /// <https://aws.amazon.com/fargate/pricing/>): 0.03238.
    pub fargate_vcpu_hour: f64,
    /// Fargate Linux/ARM, USD per GB of memory per hour (same page): 0.00356.
    pub fargate_gb_hour: f64,
    /// GB of task memory billed with each vCPU: the worker task in `deploy/framefleet.yaml`
    /// has 1 vCPU and 2 GB, so 2. Worker CPU seconds are priced as that much vCPU and memory
    /// time: what a fully busy fleet pays (idle task time is not any one job's).
    pub fargate_gb_per_vcpu: f64,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self {
            read_on: "2026-11-30".into(),
            s3_put_per_1000: 0.005,
            s3_get_per_1000: 0.0004,
            sqs_per_million: 0.40,
            dynamodb_write_per_million: 0.625,
            dynamodb_read_per_million: 0.125,
            fargate_vcpu_hour: 0.03238,
            fargate_gb_hour: 0.00356,
            fargate_gb_per_vcpu: 2.0,
        }
    }
}

/// One line of an estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostItem {
    /// What is priced, e.g. `s3_put_requests`.
    pub item: &'static str,
    /// How much of it was used, in `unit`.
    pub quantity: f64,
    /// The unit of `quantity`.
    pub unit: &'static str,
    /// USD for this line.
    pub usd: f64,
}

/// What a usage costs under a price table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    /// One line per priced item.
    pub items: Vec<CostItem>,
    /// Sum of the lines, USD.
    pub total_usd: f64,
    /// The price table's date.
    pub prices_read_on: String,
}

impl PriceTable {
    /// Checks the table; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if time::Date::parse(
            &self.read_on,
            &time::macros::format_description!("[year]-[month]-[day]"),
        )
        .is_err()
        {
            return Err(ConfigError::rule(
                "pricing.read_on",
                "must be a date, YYYY-MM-DD",
            ));
        }
        for (key, price) in [
            ("pricing.s3_put_per_1000", self.s3_put_per_1000),
            ("pricing.s3_get_per_1000", self.s3_get_per_1000),
            ("pricing.sqs_per_million", self.sqs_per_million),
            (
                "pricing.dynamodb_write_per_million",
                self.dynamodb_write_per_million,
            ),
            (
                "pricing.dynamodb_read_per_million",
                self.dynamodb_read_per_million,
            ),
            ("pricing.fargate_vcpu_hour", self.fargate_vcpu_hour),
            ("pricing.fargate_gb_hour", self.fargate_gb_hour),
            ("pricing.fargate_gb_per_vcpu", self.fargate_gb_per_vcpu),
        ] {
            if !price.is_finite() || price < 0.0 {
                return Err(ConfigError::rule(key, "must be a number, zero or more"));
            }
        }
        Ok(())
    }

    /// The estimate for `usage`, rounded to a millionth of a dollar per line.
    pub fn cost(&self, usage: &Usage) -> Cost {
        let cpu_hours = usage.worker_cpu_ms as f64 / 3_600_000.0;
        let lines = [
            (
                "s3_put_requests",
                usage.s3_put_requests as f64,
                "requests",
                self.s3_put_per_1000 / 1000.0,
            ),
            (
                "s3_get_requests",
                usage.s3_get_requests as f64,
                "requests",
                self.s3_get_per_1000 / 1000.0,
            ),
            (
                "sqs_requests",
                usage.sqs_requests as f64,
                "requests",
                self.sqs_per_million / 1e6,
            ),
            (
                "dynamodb_write_units",
                usage.dynamodb_write_units as f64,
                "write request units",
                self.dynamodb_write_per_million / 1e6,
            ),
            (
                "dynamodb_read_units",
                usage.dynamodb_read_units as f64,
                "read request units",
                self.dynamodb_read_per_million / 1e6,
            ),
            (
                "worker_compute",
                cpu_hours,
                "vCPU-hours",
                self.fargate_vcpu_hour + self.fargate_gb_per_vcpu * self.fargate_gb_hour,
            ),
        ];
        let items: Vec<CostItem> = lines
            .into_iter()
            .map(|(item, quantity, unit, price)| CostItem {
                item,
                quantity,
                unit,
                usd: round6(quantity * price),
            })
            .collect();
        Cost {
            total_usd: round6(items.iter().map(|i| i.usd).sum()),
            items,
            prices_read_on: self.read_on.clone(),
        }
    }
}

fn round6(usd: f64) -> f64 {
    (usd * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_prices_price_a_usage() {
        let usage = Usage {
            s3_get_requests: 1000,
            s3_put_requests: 1000,
            sqs_requests: 1_000_000,
            dynamodb_read_units: 1_000_000,
            dynamodb_write_units: 1_000_000,
            worker_cpu_ms: 3_600_000,
        };
        let cost = PriceTable::default().cost(&usage);
        let usd = |name: &str| cost.items.iter().find(|i| i.item == name).unwrap().usd;
        assert_eq!(usd("s3_put_requests"), 0.005);
        assert_eq!(usd("s3_get_requests"), 0.0004);
        assert_eq!(usd("sqs_requests"), 0.4);
        assert_eq!(usd("dynamodb_write_units"), 0.625);
        assert_eq!(usd("dynamodb_read_units"), 0.125);
        assert_eq!(usd("worker_compute"), 0.03950);
        assert_eq!(cost.total_usd, 1.1949);
        assert_eq!(cost.prices_read_on, "2026-11-30");
    }

    #[test]
    fn bad_prices_name_their_key() {
        let table = PriceTable {
            sqs_per_million: -1.0,
            ..PriceTable::default()
        };
        assert!(table
            .validate()
            .unwrap_err()
            .to_string()
            .contains("pricing.sqs_per_million"));
        let table = PriceTable {
            read_on: "last week".into(),
            ..PriceTable::default()
        };
        assert!(table
            .validate()
            .unwrap_err()
            .to_string()
            .contains("pricing.read_on"));
        PriceTable::default().validate().unwrap();
    }
}
