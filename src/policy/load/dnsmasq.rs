//! dnsmasq rules as block lists write them: `address=/example.com/0.0.0.0`, `server=/example.com/`
//! and `local=/example.com/`.

use super::entry::{ListEntry, Out, Parsed, SkipReason};

/// Which key a rule has: `address=` always blocks; `server=` and `local=` block only without an
/// upstream.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Address,
    Server,
    Local,
}

/// `address=/a.com/b.com/0.0.0.0`, `server=/a.com/`, `local=/a.com/`.
pub(super) fn rule(out: &mut Out<'_, impl FnMut(ListEntry)>, kind: Kind, rest: &str) -> Parsed {
    let rest = rest.strip_prefix('/').ok_or(SkipReason::UnsupportedRule)?;
    let (domains, target) = rest.rsplit_once('/').ok_or(SkipReason::UnsupportedRule)?;
    let blocks = match kind {
        Kind::Address => true,
        // With an upstream (or `#`, the default servers) the rule forwards, it does not block.
        Kind::Server | Kind::Local => target.trim().is_empty(),
    };
    if !blocks || domains.is_empty() {
        return Err(SkipReason::UnsupportedRule);
    }
    for domain in domains.split('/') {
        // `#` matches every domain: a list that blocks everything is not a block list.
        let result = match domain {
            "#" => Err(SkipReason::UnsupportedRule),
            _ => out.pattern(domain, false),
        };
        if let Err(reason) = result {
            out.skip(reason);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_accounted, blocked, parse, skipped};
    use super::*;

    #[test]
    fn dnsmasq_rules() {
        let text = "\
# dnsmasq blocklist
address=/ads.example.com/0.0.0.0
address=/tracker.example/::
address=/multi-a.example/multi-b.example/127.0.0.1
address=/nx.example/
address=/hash.example/#
server=/server.example/
local=/local.example/
address=/.leading-dot.example/0.0.0.0
address=/#/0.0.0.0
server=/forwarded.example/1.1.1.1
server=/default.example/#
server=8.8.8.8
address=/bad..example/0.0.0.0
address=/ok.example/localhost/0.0.0.0
";
        let (entries, stats) = parse(text);
        assert_eq!(
            blocked(&entries),
            [
                "ads.example.com",
                "tracker.example",
                "multi-a.example",
                "multi-b.example",
                "nx.example",
                "hash.example",
                "server.example",
                "local.example",
                "ok.example",
            ]
        );
        assert_eq!(skipped(&stats, SkipReason::UnsupportedRule), 4);
        assert_eq!(skipped(&stats, SkipReason::InvalidName), 2);
        assert_eq!(skipped(&stats, SkipReason::Localhost), 1);
        assert_accounted(&stats);
    }
}
