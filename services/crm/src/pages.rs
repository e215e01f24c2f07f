//! Every page of a paged list call of the API.

use std::future::Future;

/// The items of every page `page` gives, from the first (an empty token)
/// until a page comes without a next token.
pub async fn all<T, Fut>(mut page: impl FnMut(String) -> Fut) -> anyhow::Result<Vec<T>>
where
    Fut: Future<Output = anyhow::Result<(Vec<T>, String)>>,
{
    let (mut items, mut token) = (Vec::new(), String::new());
    loop {
        let (more, next) = page(token).await?;
        items.extend(more);
        if next.is_empty() {
            return Ok(items);
        }
        token = next;
    }
}
