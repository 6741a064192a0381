//! offset/limit paging as APIG does it: `offset` from 0, `limit` 1..=500 (default 20); answers
//! carry `total` (all matches) and `size` (this page).

use crate::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
}

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 500;

impl Page {
    pub fn parse(offset: Option<&str>, limit: Option<&str>) -> Result<Page, ApiError> {
        let offset = match offset {
            None | Some("") => 0,
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| ApiError::invalid("offset", "offset must be an integer >= 0"))?,
        };
        let limit = match limit {
            None | Some("") => DEFAULT_LIMIT,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::invalid(
                        "limit",
                        format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                    ))
                }
            },
        };
        Ok(Page { offset, limit })
    }

    /// Everything (answers to writes list what they wrote).
    pub fn all() -> Page {
        Page {
            offset: 0,
            limit: usize::MAX,
        }
    }

    /// The slice of `items` this page covers.
    pub fn apply<T>(&self, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .skip(self.offset)
            .take(self.limit)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(
            Page::parse(None, None).unwrap(),
            Page {
                offset: 0,
                limit: 20
            }
        );
        assert_eq!(Page::parse(Some("5"), Some("500")).unwrap().limit, 500);
        assert!(Page::parse(None, Some("0")).is_err());
        assert!(Page::parse(None, Some("501")).is_err());
        assert!(Page::parse(Some("-1"), None).is_err());
        assert!(Page::parse(Some("x"), None).is_err());
        let p = Page::parse(Some("1"), Some("2")).unwrap();
        assert_eq!(p.apply(vec![1, 2, 3, 4]), vec![2, 3]);
    }
}
