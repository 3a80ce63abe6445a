//! Small input checks shared by the aggregates. Each returns the cleaned value (or `None`), and
//! the caller turns `None` into its own rule-specific error.

/// The trimmed text if its length in characters (not bytes) is within `min..=max`.
pub(crate) fn trimmed_within(text: &str, min: usize, max: usize) -> Option<String> {
    let trimmed = text.trim();
    let chars = trimmed.chars().count();
    (min..=max).contains(&chars).then(|| trimmed.to_owned())
}

/// Whether `link` looks like an absolute http(s) URL of at most `max` characters: a scheme, a
/// non-empty host and no whitespace or control characters. A full URL parser is not needed to
/// keep junk out, and links are only ever shown, never fetched, by the platform.
pub(crate) fn is_web_link(link: &str, max: usize) -> bool {
    if link.chars().count() > max || link.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let lower = link.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    rest.is_some_and(|rest| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        !host.is_empty() && !host.starts_with(':')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_counted_in_characters() {
        assert_eq!(trimmed_within("  héllo ", 1, 5), Some("héllo".to_owned()));
        assert_eq!(trimmed_within("   ", 1, 5), None);
        assert_eq!(trimmed_within("ééééé", 1, 4), None);
    }

    #[test]
    fn only_absolute_http_links_with_a_host_are_accepted() {
        assert!(is_web_link("https://example.com/work?id=1", 2000));
        assert!(is_web_link("HTTP://example.com", 2000));
        assert!(!is_web_link("ftp://example.com", 2000));
        assert!(!is_web_link("https://", 2000));
        assert!(!is_web_link("https:///path", 2000));
        assert!(!is_web_link("https://exa mple.com", 2000));
        assert!(!is_web_link("javascript:alert(1)", 2000));
        assert!(!is_web_link(
            &format!("https://e.com/{}", "a".repeat(2000)),
            2000
        ));
    }
}
