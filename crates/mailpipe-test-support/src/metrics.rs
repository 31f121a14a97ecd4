//! Reading a running process's Prometheus endpoint (the kill and chaos tests watch the
//! processes they kill this way).

use mailpipe_telemetry::names;

/// The sum of a Prometheus metric's samples over its label sets.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sum of a metric's samples whose labels include `label` (e.g. `outcome="aborted"`).
pub fn metric_sum_labelled(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('{'))
                .and_then(|rest| rest.split_once('}'))
                .is_some_and(|(labels, _)| labels.split(',').any(|l| l == label))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        + 0.0 // an empty float sum is -0.0
}

/// The endpoint's text, or None while it is not up.
pub async fn scrape(http: &reqwest::Client, url: &str) -> Option<String> {
    let response = http.get(url).send().await.ok()?;
    response.text().await.ok()
}

/// Messages the process has consumed so far, or None while its endpoint is not up.
pub async fn messages_consumed(http: &reqwest::Client, url: &str) -> Option<f64> {
    let text = scrape(http, url).await?;
    Some(metric_sum(&text, names::KAFKA_MESSAGES_CONSUMED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_label_set_of_exactly_that_metric() {
        let text = "# TYPE m counter\nm{a=\"1\"} 2\nm{a=\"2\"} 3.5\nm_other 10\nm 1\n";
        assert_eq!(metric_sum(text, "m"), 6.5);
        assert_eq!(metric_sum(text, "absent"), 0.0);
    }

    #[test]
    fn sums_the_label_sets_holding_a_label() {
        let text = "m{stage=\"v\",outcome=\"aborted\"} 2\nm{stage=\"v\",outcome=\"committed\"} 5\n\
                    m{outcome=\"aborted\",stage=\"w\"} 1\nm_x{outcome=\"aborted\"} 9\nm 4\n";
        assert_eq!(metric_sum_labelled(text, "m", "outcome=\"aborted\""), 3.0);
        assert_eq!(metric_sum_labelled(text, "m", "outcome=\"other\""), 0.0);
    }
}
