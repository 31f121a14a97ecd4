//! The enrichment step of the normalize stage (`[enrichment]` settings): after an event is
//! parsed, before it is encoded, its user agent and IP are turned into the v2 fields of
//! `email_event.avsc` with the pure functions of `mailpipe_enrich`.
//!
//! Why here and not a stage of its own: every input is on the event already, the work is
//! a few microseconds of pure computation per engagement event, and a separate stage would
//! cost a topic, a transaction and a hop for it. `mailpipe replay` runs the same step, so a
//! replay also fills in the fields of events normalized before enrichment existed.
//!
//! - `client_name`, `client_os`, `device_class`: from the user agent of `opened` and
//!   `clicked` events (other events' user agents are not a reader's: a complaint's is the
//!   feedback-report generator's).
//! - `machine_open` / `machine_reason`: on `opened` events only; the provider's own flag
//!   when it sent one (set by the parser), else the user-agent and IP heuristics.
//! - `geo` / `geo_source`: the provider's location when it gave one (`provider`); else, on
//!   `opened` and `clicked` events with an IP and a configured database, the database's
//!   (`ip_database`). Never a network call.

use std::path::Path;

use anyhow::Context;
use mailpipe_enrich::{classify_open, classify_user_agent, Device, GeoDatabase};
use mailpipe_model::{DeviceClass, EmailEvent, EventType, Geo};
use mailpipe_settings::EnrichmentSettings;
use mailpipe_telemetry::names;

/// Enriches events as `[enrichment]` says.
#[derive(Debug)]
pub struct Enricher {
    user_agents: bool,
    geo: Option<GeoDatabase>,
}

impl Enricher {
    /// From the settings; opens the geolocation database if one is configured (an error
    /// names the file and what is wrong with it).
    pub fn from_settings(settings: &EnrichmentSettings) -> anyhow::Result<Enricher> {
        let geo = if settings.geoip_database.is_empty() {
            None
        } else {
            let path = Path::new(&settings.geoip_database);
            let db = GeoDatabase::open(path)
                .with_context(|| format!("enrichment.geoip_database {}", path.display()))?;
            tracing::info!(path = %path.display(), database = %db.description(),
                "IP geolocation database loaded");
            Some(db)
        };
        Ok(Enricher {
            user_agents: settings.user_agents,
            geo,
        })
    }

    /// An enricher with the given parts (tests, benchmarks).
    pub fn new(user_agents: bool, geo: Option<GeoDatabase>) -> Enricher {
        Enricher { user_agents, geo }
    }

    /// Fills in the enrichment fields of one event.
    pub fn enrich(&self, event: &mut EmailEvent) {
        let engagement = matches!(event.event_type, EventType::Opened | EventType::Clicked);
        let user_agent = if self.user_agents {
            event
                .user_agent
                .as_deref()
                .map(str::trim)
                .filter(|ua| !ua.is_empty())
        } else {
            // Without user-agent enrichment only the provider's own flag judges an open.
            None
        };
        let (info, verdict) = if event.event_type == EventType::Opened {
            let ip = if self.user_agents {
                event.ip.as_deref()
            } else {
                None
            };
            let (info, verdict) = classify_open(user_agent, ip, event.machine_open);
            (user_agent.map(|_| info), Some(verdict))
        } else if engagement {
            (user_agent.map(classify_user_agent), None)
        } else {
            (None, None)
        };
        if let Some(info) = info {
            event.client_name = info.client;
            event.client_os = info.os;
            event.device_class = Some(device_class(info.device));
        }
        event.machine_open = verdict.map(|v| v.machine);
        event.machine_reason = verdict
            .and_then(|v| v.reason)
            .map(|r| r.as_str().to_string());
        if let Some(verdict) = verdict {
            metrics::counter!(names::NORMALIZE_OPENS,
                "machine" => if verdict.machine { "true" } else { "false" },
                "reason" => verdict.reason.map_or("none", |r| r.as_str()))
            .increment(1);
        }
        self.locate(event, engagement);
    }

    fn locate(&self, event: &mut EmailEvent, engagement: bool) {
        let provider_located = event
            .geo
            .as_ref()
            .is_some_and(|g| g.country.is_some() || g.region.is_some() || g.city.is_some());
        if provider_located {
            event.geo_source = Some("provider".into());
            return;
        }
        event.geo_source = None;
        let (Some(db), true, Some(ip)) = (&self.geo, engagement, event.ip.as_deref()) else {
            return;
        };
        match db.lookup(ip) {
            Some(found) => {
                event.geo = Some(Geo {
                    country: found.country,
                    region: found.region,
                    city: found.city,
                });
                event.geo_source = Some("ip_database".into());
                metrics::counter!(names::NORMALIZE_GEO_LOOKUPS, "result" => "found").increment(1);
            }
            None => {
                metrics::counter!(names::NORMALIZE_GEO_LOOKUPS, "result" => "not_found")
                    .increment(1);
            }
        }
    }
}

fn device_class(device: Device) -> DeviceClass {
    match device {
        Device::Desktop => DeviceClass::Desktop,
        Device::Mobile => DeviceClass::Mobile,
        Device::Tablet => DeviceClass::Tablet,
        Device::Proxy => DeviceClass::Proxy,
        Device::Bot => DeviceClass::Bot,
        Device::Unknown => DeviceClass::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use mailpipe_enrich::mmdb_writer::write_city_database;
    use mailpipe_enrich::GeoFields;
    use mailpipe_test_support::EventBuilder;

    use super::*;

    fn event(event_type: EventType, ua: Option<&str>, ip: Option<&str>) -> EmailEvent {
        EventBuilder::new("e")
            .event_type(event_type)
            .recipient("a@x.test")
            .user_agent(ua.map(str::to_string))
            .ip(ip.map(str::to_string))
            .build()
    }

    fn geo_db() -> GeoDatabase {
        let network: IpAddr = "203.0.113.0".parse().unwrap();
        let fields = GeoFields::new("NZ", "AUK", "Auckland");
        GeoDatabase::from_bytes(write_city_database(&[(network, 24, fields)], 6).unwrap()).unwrap()
    }

    const IPHONE_MAIL: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";

    #[test]
    fn opens_get_client_device_verdict_and_location() {
        let enricher = Enricher::new(true, Some(geo_db()));
        let mut open = event(EventType::Opened, Some(IPHONE_MAIL), Some("203.0.113.9"));
        enricher.enrich(&mut open);
        assert_eq!(open.client_name.as_deref(), Some("Apple Mail"));
        assert_eq!(open.client_os.as_deref(), Some("iOS"));
        assert_eq!(open.device_class, Some(DeviceClass::Mobile));
        assert_eq!(open.machine_open, Some(false));
        assert_eq!(open.machine_reason, None);
        assert_eq!(open.geo.as_ref().unwrap().city.as_deref(), Some("Auckland"));
        assert_eq!(open.geo_source.as_deref(), Some("ip_database"));
    }

    #[test]
    fn apple_privacy_prefetch_is_a_machine_open_and_a_provider_flag_wins() {
        let enricher = Enricher::new(true, None);
        let mut prefetch = event(EventType::Opened, Some("Mozilla/5.0"), None);
        enricher.enrich(&mut prefetch);
        assert_eq!(prefetch.machine_open, Some(true));
        assert_eq!(
            prefetch.machine_reason.as_deref(),
            Some("apple_mail_privacy")
        );
        assert_eq!(prefetch.device_class, Some(DeviceClass::Proxy));

        let mut flagged = event(EventType::Opened, Some(IPHONE_MAIL), None);
        flagged.machine_open = Some(true);
        enricher.enrich(&mut flagged);
        assert_eq!(flagged.machine_reason.as_deref(), Some("provider_flag"));

        // Without user-agent enrichment only the provider's flag counts.
        let plain = Enricher::new(false, None);
        let mut bare = event(EventType::Opened, Some("Mozilla/5.0"), None);
        plain.enrich(&mut bare);
        assert_eq!((bare.machine_open, bare.client_name), (Some(false), None));
        let mut flagged = event(EventType::Opened, None, None);
        flagged.machine_open = Some(true);
        plain.enrich(&mut flagged);
        assert_eq!(flagged.machine_reason.as_deref(), Some("provider_flag"));
    }

    #[test]
    fn other_events_keep_their_user_agent_unclassified_and_are_not_located() {
        let enricher = Enricher::new(true, Some(geo_db()));
        for event_type in [
            EventType::Complained,
            EventType::Delivered,
            EventType::Bounced,
        ] {
            let mut e = event(event_type, Some(IPHONE_MAIL), Some("203.0.113.9"));
            e.machine_open = Some(true);
            enricher.enrich(&mut e);
            assert_eq!(e.client_name, None, "{event_type:?}");
            assert_eq!(e.machine_open, None);
            assert_eq!(e.geo, None, "a delivery's IP is the sender's");
            assert_eq!(e.geo_source, None);
        }
    }

    #[test]
    fn the_providers_location_is_kept_and_named() {
        let enricher = Enricher::new(true, Some(geo_db()));
        let mut click = event(EventType::Clicked, Some(IPHONE_MAIL), Some("203.0.113.9"));
        click.geo = Some(Geo {
            country: Some("US".into()),
            region: None,
            city: None,
        });
        enricher.enrich(&mut click);
        assert_eq!(click.geo.as_ref().unwrap().country.as_deref(), Some("US"));
        assert_eq!(click.geo_source.as_deref(), Some("provider"));
        assert_eq!(
            click.machine_open, None,
            "clicks carry no machine-open verdict"
        );
        // An address the database does not hold: no location.
        let mut elsewhere = event(EventType::Clicked, None, Some("198.51.100.1"));
        enricher.enrich(&mut elsewhere);
        assert_eq!((elsewhere.geo, elsewhere.geo_source), (None, None));
    }
}
