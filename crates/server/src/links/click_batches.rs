//! Click batches: the aggregates a server gathered in one flush interval, applied to the
//! link statistics (per day, referrer host, device class, bots apart), and the visits of
//! the visit log, inserted in the same transaction.
//!
//! Idempotent: the batch id is recorded in the transaction that adds the counts, so a batch
//! delivered twice (a crash after commit, a lease lost under a slow worker) adds nothing
//! the second time.

use std::fmt::Write;
use std::net::IpAddr;
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
    /// Visits for the visit log, one [`VisitLine`] each (a batch carries counts or visits).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub visits: String,
}

/// One visit of the visit log on its way to the database, as a line of text.
///
/// A batch of a thousand visits is then one string in the job, not a thousand JSON objects:
/// building, storing and parsing those objects cost the server more than the redirects they
/// log. The fields are separated by single spaces, an absent one left empty:
/// `link at device browser referrer country network`, then a line feed. No field can hold a
/// space or a line break: the referrer is a checked host name, the country two letters, the
/// network an address, the device and browser names of our own (a field that broke this
/// would be written empty).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VisitLine<'a> {
    /// The link's id.
    pub link: i64,
    /// When, Unix milliseconds.
    pub at: i64,
    /// The device class (`bot` for bots).
    pub device: Device,
    /// The browser family.
    pub browser: &'a str,
    /// The referring host.
    pub referrer: Option<&'a str>,
    /// The country, when known.
    pub country: Option<&'a str>,
    /// The client's network (its address cut to /24 or /48).
    pub network: Option<IpAddr>,
}

impl VisitLine<'_> {
    /// Appends this visit's line to `out`.
    pub fn write_to(&self, out: &mut String) {
        fn field(text: Option<&str>) -> &str {
            text.filter(|t| !t.contains([' ', '\n'])).unwrap_or("")
        }
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{} {} {} {} {} {} ",
            self.link,
            self.at,
            self.device.as_str(),
            field(Some(self.browser)),
            field(self.referrer),
            field(self.country),
        );
        if let Some(network) = self.network {
            let _ = write!(out, "{network}");
        }
        out.push('\n');
    }

    /// The link id at the start of a visit line, if it has one.
    pub fn link_of(line: &str) -> Option<i64> {
        line.split(' ').next()?.parse().ok()
    }

    /// Reads one line (without its line feed) as the store keeps it.
    fn parse(line: &str) -> Result<Visit, String> {
        let mut fields = line.split(' ');
        let mut next = || fields.next().ok_or("too few fields");
        let optional = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        let link = next()?.parse().map_err(|_| "a link id that is no number")?;
        let at = next()?.parse().map_err(|_| "a time that is no number")?;
        let device_name = next()?;
        let device = Device::ALL
            .into_iter()
            .find(|d| d.as_str() == device_name)
            .ok_or("an unknown device class")?;
        let browser = next()?.to_owned();
        let referrer = optional(next()?);
        let country = optional(next()?);
        let network = optional(next()?);
        if fields.next().is_some() {
            return Err("too many fields".into());
        }
        Ok(Visit {
            id: 0,
            link_id: link,
            at,
            referrer,
            device: device.as_str().to_owned(),
            browser,
            country,
            bot: device == Device::Bot,
            ip: network,
        })
    }
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
            visits: String::new(),
        }
    }

    /// The batch as the store applies it; an unknown device class is a poison message.
    pub fn into_batch(self) -> Result<ClickBatch, JobError> {
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
            .lines()
            .map(|line| {
                VisitLine::parse(line)
                    .map_err(|why| JobError::Fatal(format!("visit line {line:?}: {why}")))
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

    fn visit(device: Device) -> VisitLine<'static> {
        VisitLine {
            link: 3,
            at: 1_000,
            device,
            browser: "firefox",
            referrer: Some("news.example"),
            country: None,
            network: Some("2001:db8:1234::".parse().unwrap()),
        }
    }

    #[test]
    fn visits_survive_the_trip_through_json_with_their_bot_flag() {
        let mut lines = String::new();
        visit(Device::Mobile).write_to(&mut lines);
        VisitLine {
            referrer: None,
            country: Some("FR"),
            network: None,
            ..visit(Device::Bot)
        }
        .write_to(&mut lines);
        let job = ClickBatchJob {
            batch: "v1".into(),
            links: vec![],
            visits: lines,
        };
        let back: ClickBatchJob =
            serde_json::from_value(serde_json::to_value(&job).unwrap()).unwrap();
        assert_eq!(back, job);
        let batch = back.into_batch().unwrap();
        let [mobile, bot] = &batch.visits[..] else {
            panic!("two visits, not {:?}", batch.visits);
        };
        assert_eq!(
            (
                mobile.link_id,
                mobile.at,
                mobile.device.as_str(),
                mobile.browser.as_str()
            ),
            (3, 1_000, "mobile", "firefox")
        );
        assert_eq!(mobile.referrer.as_deref(), Some("news.example"));
        assert_eq!(mobile.ip.as_deref(), Some("2001:db8:1234::"));
        assert_eq!((mobile.bot, mobile.country.as_deref()), (false, None));
        assert_eq!(
            (bot.bot, bot.referrer.as_deref(), bot.ip.as_deref()),
            (true, None, None)
        );
        assert_eq!(bot.country.as_deref(), Some("FR"));
    }

    #[test]
    fn a_field_with_a_separator_is_written_empty_and_a_bad_line_is_a_poison_message() {
        let mut lines = String::new();
        VisitLine {
            referrer: Some("evil host\n9 9 bot other"),
            ..visit(Device::Desktop)
        }
        .write_to(&mut lines);
        assert_eq!(lines.lines().count(), 1);
        let job = |visits: &str| ClickBatchJob {
            batch: "b".into(),
            links: vec![],
            visits: visits.into(),
        };
        let batch = job(&lines).into_batch().unwrap();
        assert_eq!(batch.visits[0].referrer, None);
        for bad in [
            "x 1 desktop chrome   ",
            "1 1 toaster chrome   ",
            "1 1 desktop chrome",
            "1 1 desktop chrome     ",
        ] {
            assert!(
                matches!(job(bad).into_batch(), Err(JobError::Fatal(_))),
                "{bad:?} was taken"
            );
        }
        assert_eq!(VisitLine::link_of(&lines), Some(3));
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
            visits: String::new(),
        };
        assert!(matches!(job.into_batch(), Err(JobError::Fatal(_))));
    }
}
