//! Click batches: the aggregates a server gathered in one flush interval, applied to the
//! link statistics (per day, referrer host, device class, bots apart), and the visits of
//! the visit log, inserted in the same transaction.
//!
//! Idempotent: the batch id is recorded in the transaction that adds the counts, so a batch
//! delivered twice (a crash after commit, a lease lost under a slow worker) adds nothing
//! the second time.

use std::borrow::Cow;
use std::sync::Arc;

use basis_queue::{ClaimedJob, JobError};
use basis_store::links::{self, ClickBatch, LinkClicks, Visit};
use serde::{Deserialize, Serialize};

use crate::jobs::context::JobContext;
use crate::links::device::Device;

/// The job kind.
pub const APPLY_CLICKS: &str = "clicks.apply";
/// How long applied-batch records are kept (a batch is redelivered within minutes).
const APPLIED_RECORD_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// The payload of a click-batch job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClickBatchJob {
    /// The batch's id, unique per flush: what makes applying it idempotent.
    pub batch: String,
    /// The counts, one entry per link.
    pub links: Vec<LinkCounts>,
    /// Visits for the visit log (a batch carries counts or visits).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visits: Vec<VisitEntry>,
}

/// One visit in a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitEntry {
    /// The link's id.
    pub link: i64,
    /// When, Unix milliseconds.
    pub at: i64,
    /// The referring host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    /// The device class (`bot` for bots).
    pub device: Cow<'static, str>,
    /// The browser family.
    pub browser: Cow<'static, str>,
    /// The country, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The client's network (address cut to /24 or /48).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// One link's clicks in a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkCounts {
    /// The link's id.
    pub link: i64,
    /// Human clicks.
    pub humans: i64,
    /// `[day, human clicks, bot clicks]`, day = days since 1970-01-01 UTC.
    pub days: Vec<(i64, i64, i64)>,
    /// `[referrer host, human clicks]`.
    pub referrers: Vec<(String, i64)>,
    /// `[device class, clicks]`, bots as their own class.
    pub devices: Vec<(String, i64)>,
}

impl ClickBatchJob {
    /// The payload for `links` under `batch`.
    pub fn new(batch: String, links: &[LinkClicks]) -> Self {
        Self {
            batch,
            links: links
                .iter()
                .map(|l| LinkCounts {
                    link: l.link_id,
                    humans: l.humans,
                    days: l.days.clone(),
                    referrers: l.referrers.clone(),
                    devices: l
                        .devices
                        .iter()
                        .map(|(d, n)| ((*d).to_owned(), *n))
                        .collect(),
                })
                .collect(),
            visits: Vec::new(),
        }
    }

    /// The batch as the store applies it; an unknown device class is a poison message.
    fn into_batch(self) -> Result<ClickBatch, JobError> {
        let links = self
            .links
            .into_iter()
            .map(|l| {
                let devices = l
                    .devices
                    .iter()
                    .map(|(name, n)| {
                        Device::ALL
                            .iter()
                            .find(|d| d.as_str() == name)
                            .map(|d| (d.as_str(), *n))
                            .ok_or_else(|| {
                                JobError::Fatal(format!("unknown device class {name:?}"))
                            })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(LinkClicks {
                    link_id: l.link,
                    humans: l.humans,
                    days: l.days,
                    referrers: l.referrers,
                    devices,
                })
            })
            .collect::<Result<_, JobError>>()?;
        let visits = self
            .visits
            .into_iter()
            .map(|v| {
                let device = Device::ALL
                    .iter()
                    .find(|d| d.as_str() == v.device)
                    .ok_or_else(|| {
                        JobError::Fatal(format!("unknown device class {:?}", v.device))
                    })?;
                Ok(Visit {
                    id: 0,
                    link_id: v.link,
                    at: v.at,
                    referrer: v.referrer,
                    device: device.as_str().to_owned(),
                    browser: v.browser.into_owned(),
                    country: v.country,
                    bot: *device == Device::Bot,
                    ip: v.ip,
                })
            })
            .collect::<Result<_, JobError>>()?;
        Ok(ClickBatch { links, visits })
    }
}

/// Applies one batch, once.
pub async fn apply(
    ctx: Arc<JobContext>,
    job: ClaimedJob,
) -> Result<Option<serde_json::Value>, JobError> {
    let payload: ClickBatchJob =
        serde_json::from_value(job.payload).map_err(JobError::bad_payload)?;
    let batch_id = payload.batch.clone();
    let batch = payload.into_batch()?;
    let now = ctx.clock.now_ms();
    let applied = links::apply_clicks_once(&ctx.store, &batch_id, now, &batch)
        .await
        .map_err(|e| JobError::Retry(e.to_string()))?;
    if let Some(recorder) = &ctx.clicks {
        recorder.applied(&batch_id);
    }
    if applied.is_some() && rand::random::<u8>() == 0 {
        // Now and then, so the record table stays small without a scheduler.
        if let Err(err) =
            links::prune_applied_batches(&ctx.store, now - APPLIED_RECORD_TTL_MS).await
        {
            tracing::warn!(error = %err, "cannot prune applied click batch records");
        }
    }
    Ok(Some(match applied {
        Some(links) => serde_json::json!({ "links": links }),
        None => serde_json::json!({ "links": 0, "alreadyApplied": true }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_survives_the_trip_through_json() {
        let link = LinkClicks {
            link_id: 7,
            humans: 3,
            days: vec![(20_000, 3, 1)],
            referrers: vec![("news.example".into(), 2)],
            devices: vec![("desktop", 2), ("mobile", 1), ("bot", 1)],
        };
        let job = ClickBatchJob::new("b1".into(), std::slice::from_ref(&link));
        let text = serde_json::to_value(&job).unwrap();
        let back: ClickBatchJob = serde_json::from_value(text).unwrap();
        assert_eq!(back.into_batch().unwrap().links, vec![link]);
    }

    #[test]
    fn visits_survive_the_trip_through_json_with_their_bot_flag() {
        let visit = |device: &'static str| VisitEntry {
            link: 3,
            at: 1_000,
            referrer: Some("news.example".into()),
            device: device.into(),
            browser: "firefox".into(),
            country: None,
            ip: Some("203.0.113.0".into()),
        };
        let job = ClickBatchJob {
            batch: "v1".into(),
            links: vec![],
            visits: vec![visit("mobile"), visit("bot")],
        };
        let back: ClickBatchJob =
            serde_json::from_value(serde_json::to_value(&job).unwrap()).unwrap();
        assert_eq!(back, job);
        let batch = back.into_batch().unwrap();
        assert_eq!(
            batch.visits.iter().map(|v| v.bot).collect::<Vec<_>>(),
            [false, true]
        );
        assert_eq!(batch.visits[0].ip.as_deref(), Some("203.0.113.0"));
    }

    #[test]
    fn an_unknown_device_class_is_a_poison_message() {
        let job = ClickBatchJob {
            batch: "b".into(),
            links: vec![LinkCounts {
                link: 1,
                humans: 1,
                days: vec![],
                referrers: vec![],
                devices: vec![("toaster".into(), 1)],
            }],
            visits: vec![],
        };
        assert!(matches!(job.into_batch(), Err(JobError::Fatal(_))));
    }
}
