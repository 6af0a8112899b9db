//! The one rule every adapter's list walk ends by: on evidence only (see [`ListWalk`]).

use std::future::Future;

use crate::domain::{AccountSource, ProviderError, ProviderKind};

/// Vendor list pages walked at most: a vendor that keeps answering full pages is broken, and
/// following it forever would hold memory and the caller.
pub(crate) const MAX_LIST_PAGES: u32 = 1000;

/// The error for a list that did not end within [`MAX_LIST_PAGES`].
pub(crate) fn too_many_pages(vendor: ProviderKind) -> ProviderError {
    ProviderError::Upstream {
        status: None,
        message: format!(
            "{vendor} kept returning pages past {MAX_LIST_PAGES}; listing stopped, so the list \
             is incomplete"
        ),
    }
}

/// What one page of a vendor list showed, in the vendor's own signals.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PageSignals {
    /// Items on this page.
    pub items: usize,
    /// Of them, items no earlier page had.
    pub new: usize,
    /// The whole list's size, where the vendor states one and it is known to be a total (a
    /// count that may be the page's own is not one).
    pub total: Option<usize>,
    /// The vendor's "more pages follow" flag, when the reply carried one.
    pub more: Option<bool>,
    /// The page size asked for (or, where the vendor fixes it, the largest page seen).
    pub asked: usize,
}

/// One rule for ending every vendor's list walk: **on evidence only** — an empty page, or a
/// stated total that what was read agrees with, or a "no more" flag on a page shorter than
/// asked (the two agreeing). A flag alone or a short page alone is not evidence: vendors cap
/// page sizes silently, echo the size asked for, and leave flags out. When the signals
/// disagree the walk keeps reading; a walk that cannot end within [`MAX_LIST_PAGES`], or
/// whose pages stop bringing anything new, is an error — the account then shows in the
/// list's `errors`, never as a short list that looks whole.
#[derive(Debug)]
pub(crate) struct ListWalk {
    vendor: ProviderKind,
    pages: u32,
    read: usize,
    stale: u32,
}

impl ListWalk {
    pub(crate) fn new(vendor: ProviderKind) -> Self {
        Self {
            vendor,
            pages: 0,
            read: 0,
            stale: 0,
        }
    }

    /// Takes one page's signals: `Ok(true)` to read the next page, `Ok(false)` when the list
    /// is known to be whole, an error when it cannot be.
    pub(crate) fn next(&mut self, page: PageSignals) -> Result<bool, ProviderError> {
        self.pages += 1;
        self.read += page.new;
        if page.items == 0 || page.total.is_some_and(|t| self.read >= t) {
            return Ok(false);
        }
        if page.more == Some(false) && page.items < page.asked {
            return Ok(false);
        }
        // A page of nothing new once is a vendor counting pages from another base; twice in
        // a row it is not advancing, and what it has not shown cannot be known.
        self.stale = if page.new == 0 { self.stale + 1 } else { 0 };
        if self.stale >= 2 {
            return Err(ProviderError::Upstream {
                status: None,
                message: format!(
                    "{} repeated page {} of its list without anything new after {} items; \
                     the list could not be read whole",
                    self.vendor, self.pages, self.read
                ),
            });
        }
        if self.pages >= MAX_LIST_PAGES {
            return Err(too_many_pages(self.vendor));
        }
        Ok(true)
    }
}

/// One page of an account's sources, with the vendor's paging signals.
#[derive(Debug, Default)]
pub(crate) struct SourcePage {
    pub sources: Vec<AccountSource>,
    /// Ids of the items on the page left out of `sources` (deleted, being deleted): they
    /// count as read, once each, like the rest.
    pub gone: Vec<String>,
    /// The whole list's size, where the vendor states one that is known to be a total.
    pub total: Option<usize>,
    /// The vendor's "more pages follow" flag.
    pub more: Option<bool>,
    /// The page size asked for.
    pub asked: usize,
}

impl SourcePage {
    /// A page of `listed` sources, leaving out those whose status is one of `gone` (deleted,
    /// being deleted: nothing to snapshot) while counting them as read.
    pub(crate) fn of(listed: Vec<AccountSource>, gone: &[&str], asked: usize) -> Self {
        let (left_out, sources): (Vec<AccountSource>, Vec<AccountSource>) = listed
            .into_iter()
            .partition(|s| s.status.as_deref().is_some_and(|st| gone.contains(&st)));
        Self {
            gone: left_out.into_iter().map(|s| s.id).collect(),
            sources,
            asked,
            ..Self::default()
        }
    }
}

/// Walks a vendor's paged source list from page 1 to its end, ending on evidence only (the
/// rule of [`ListWalk`]); a source an earlier page showed is not repeated. An error on any
/// page is the walk's error: a short list of sources would leave some out of a policy.
pub(crate) async fn walk_sources<F, Fut>(
    vendor: ProviderKind,
    mut page: F,
) -> Result<Vec<AccountSource>, ProviderError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<SourcePage, ProviderError>>,
{
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut walk = ListWalk::new(vendor);
    for n in 1.. {
        let reply = page(n).await?;
        let items = reply.sources.len() + reply.gone.len();
        // An id counts as new once, whether listed or left out: a repeated page (a vendor
        // counting pages from another base) brings nothing new, left-out items included.
        let new = reply
            .gone
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .count();
        let before = out.len();
        out.extend(
            reply
                .sources
                .into_iter()
                .filter(|s| seen.insert(s.id.clone())),
        );
        let signals = PageSignals {
            items,
            new: new + out.len() - before,
            total: reply.total,
            more: reply.more,
            asked: reply.asked,
        };
        if !walk.next(signals)? {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(pages: &[PageSignals]) -> (usize, Result<bool, ProviderError>) {
        let mut w = ListWalk::new(ProviderKind::ALL[0]);
        for (i, p) in pages.iter().enumerate() {
            match w.next(*p) {
                Ok(true) => continue,
                other => return (i + 1, other),
            }
        }
        (pages.len(), Ok(true))
    }

    fn page(items: usize, total: Option<usize>, more: Option<bool>) -> PageSignals {
        PageSignals {
            items,
            new: items,
            total,
            more,
            asked: 100,
        }
    }

    #[test]
    fn a_list_walk_ends_only_on_evidence() {
        // A short page alone (a silent cap) and a full page flagged "no more" both go on.
        assert_eq!(walk(&[page(20, None, None), page(0, None, None)]).0, 2);
        let (read, end) = walk(&[page(100, None, Some(false)), page(30, None, Some(false))]);
        assert_eq!((read, end), (2, Ok(false)));
        // A "more" flag on a short page is believed over the shortness.
        assert_eq!(walk(&[page(20, None, Some(true))]).1, Ok(true));
        // A total agreeing with what was read ends it, however short the pages.
        assert_eq!(
            walk(&[page(20, Some(40), None), page(20, Some(40), None)]),
            (2, Ok(false))
        );
        // An empty page ends it.
        assert_eq!(walk(&[page(0, Some(40), Some(true))]), (1, Ok(false)));
        // Pages that bring nothing new twice in a row: an error, never a short list.
        let stale = PageSignals {
            new: 0,
            ..page(20, None, None)
        };
        let (_, end) = walk(&[page(20, None, None), stale, stale]);
        let message = end.unwrap_err().to_string();
        assert!(message.contains("could not be read whole"), "{message}");
        // One repeat (a vendor counting pages from 0 or 1) is tolerated.
        assert_eq!(
            walk(&[
                page(20, None, None),
                stale,
                page(5, None, None),
                page(0, None, None)
            ])
            .1,
            Ok(false)
        );
    }

    fn source(id: usize, status: &str) -> AccountSource {
        AccountSource {
            id: id.to_string(),
            name: None,
            kind: crate::domain::SourceKind::Instance,
            status: Some(status.to_owned()),
        }
    }

    #[tokio::test]
    async fn a_repeated_page_with_left_out_items_brings_nothing_new() {
        // A 1-based vendor answers page 1 twice (the first request names no number): its 10
        // deleted items must not count twice, or `total` (105) would end the walk before the
        // last 5 live sources were read.
        let first: Vec<AccountSource> = (0..100)
            .map(|i| source(i, if i < 10 { "deleted" } else { "on" }))
            .collect();
        let pages = [
            first.clone(),
            first,
            (100..105).map(|i| source(i, "on")).collect(),
        ];
        let listed = walk_sources(ProviderKind::ALL[0], |n| {
            let page = pages.get(n as usize - 1).cloned().unwrap_or_default();
            async move {
                Ok(SourcePage {
                    total: Some(105),
                    ..SourcePage::of(page, &["deleted"], 100)
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(listed.len(), 95);
        assert_eq!(listed.last().unwrap().id, "104");
    }
}
