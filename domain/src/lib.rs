//! gigledger's domain: aggregates, commands, events, errors and money (being written).
