//! Name forms for matching: folded to lower-case ASCII letters, nicknames
//! mapped to the formal name they stand for, and a phonetic key.

use std::{collections::HashMap, sync::LazyLock};

use rphonetic::{DoubleMetaphone, Encoder};

/// Nickname groups, formal name first. English given names; extend as the
/// customer base needs.
const NICKNAMES: &[&[&str]] = &[
    &["robert", "bob", "bobby", "rob", "robbie", "bert"],
    &["william", "bill", "billy", "will", "willy", "liam"],
    &["richard", "rick", "ricky", "dick", "rich", "richie"],
    &["james", "jim", "jimmy", "jamie"],
    &["john", "jack", "johnny", "jon"],
    &["jonathan", "jon", "jonny"],
    &["margaret", "maggie", "meg", "peggy", "marge", "margie", "greta"],
    &["elizabeth", "liz", "lizzie", "beth", "betty", "eliza", "libby", "betsy", "elisabeth"],
    &["katherine", "kate", "katie", "kathy", "kat", "catherine", "kathryn", "cathy", "kitty"],
    &["michael", "mike", "mikey", "mick", "mickey"],
    &["thomas", "tom", "tommy"],
    &["joseph", "joe", "joey"],
    &["charles", "charlie", "chuck", "chas"],
    &["christopher", "chris", "kit", "topher"],
    &["christine", "chris", "chrissy", "tina", "christina"],
    &["daniel", "dan", "danny"],
    &["matthew", "matt", "matty"],
    &["anthony", "tony", "ant"],
    &["andrew", "andy", "drew"],
    &["edward", "ed", "eddie", "ted", "teddy", "ned"],
    &["david", "dave", "davy"],
    &["steven", "steve", "stephen", "stevie"],
    &["benjamin", "ben", "benny", "benji"],
    &["samuel", "sam", "sammy"],
    &["samantha", "sam", "sammy"],
    &["alexander", "alex", "al", "sandy", "xander"],
    &["alexandra", "alex", "sandra", "sandy", "lexi"],
    &["patricia", "pat", "patty", "trish", "tricia"],
    &["patrick", "pat", "paddy"],
    &["jennifer", "jen", "jenny", "jenn"],
    &["susan", "sue", "susie", "suzy"],
    &["deborah", "deb", "debbie", "debby"],
    &["rebecca", "becky", "becca"],
    &["victoria", "vicky", "tori", "vic"],
    &["nicholas", "nick", "nicky"],
    &["gregory", "greg"],
    &["timothy", "tim", "timmy"],
    &["kenneth", "ken", "kenny"],
    &["ronald", "ron", "ronnie"],
    &["donald", "don", "donnie"],
    &["lawrence", "larry", "laurie"],
    &["jeffrey", "jeff"],
    &["frederick", "fred", "freddie"],
    &["peter", "pete"],
    &["raymond", "ray"],
    &["gerald", "gerry", "jerry"],
    &["harold", "harry", "hal"],
    &["henry", "harry", "hank"],
    &["dorothy", "dot", "dotty", "dottie"],
    &["abigail", "abby", "gail"],
    &["jessica", "jess", "jessie"],
    &["amanda", "mandy"],
    &["barbara", "barb", "babs"],
    &["judith", "judy"],
    &["theresa", "terry", "tess", "tessa", "teresa"],
    &["pamela", "pam"],
    &["cynthia", "cindy"],
    &["kimberly", "kim"],
    &["jacqueline", "jackie"],
    &["frances", "fran", "frankie"],
    &["francis", "frank", "frankie"],
    &["leonard", "leo", "len", "lenny"],
    &["vincent", "vince", "vinny"],
    &["philip", "phil", "phillip"],
    &["douglas", "doug"],
    &["gabriel", "gabe"],
    &["gabriella", "gabby", "ella"],
    &["isabella", "bella", "izzy", "isabel"],
    &["eleanor", "ellie", "nora", "elle"],
    &["madeline", "maddie", "madeleine"],
    &["allison", "ally", "allie", "alison"],
    &["zachary", "zach", "zack"],
    &["nathaniel", "nate", "nat", "nathan"],
    &["joshua", "josh"],
    &["stanley", "stan"],
    &["walter", "walt", "wally"],
    &["albert", "al", "bert"],
    &["arthur", "art", "artie"],
    &["eugene", "gene"],
    &["louis", "lou", "louie"],
    &["louise", "lou", "lulu"],
    &["mary", "molly", "polly", "mae", "maria", "marie"],
    &["ann", "anne", "annie", "anna", "nancy", "hannah"],
    &["helen", "nell", "nellie", "ellen"],
    &["sarah", "sara", "sally", "sadie"],
    &["virginia", "ginny", "ginger"],
    &["josephine", "jo", "josie"],
    &["johanna", "jo", "joanna", "joanne"],
    &["carolyn", "carol", "carrie", "caroline"],
    &["sophia", "sophie"],
    &["olivia", "liv", "livvy"],
    &["emily", "em", "emmy"],
    &["emma", "em", "emmy"],
];

static FORMAL: LazyLock<HashMap<&'static str, &'static str>> = LazyLock::new(|| {
    let mut formal = HashMap::new();
    for group in NICKNAMES {
        for name in *group {
            // The first group naming a nickname wins ("chris" -> christopher).
            formal.entry(*name).or_insert(group[0]);
        }
    }
    formal
});

static METAPHONE: LazyLock<DoubleMetaphone> = LazyLock::new(DoubleMetaphone::default);

/// Lower-case ASCII letters only: "O'Brien-Smith" -> "obriensmith", "José" -> "jose".
pub fn fold(name: &str) -> String {
    fold_keeping(name, |c| c.is_ascii_alphabetic())
}

/// Like [`fold`], digits kept too (company names: "3M", "Acme 2").
pub fn fold_with_digits(name: &str) -> String {
    fold_keeping(name, |c| c.is_ascii_alphanumeric())
}

fn fold_keeping(name: &str, keep: impl Fn(char) -> bool) -> String {
    name.chars()
        .filter_map(|c| {
            let c = match c {
                'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => 'a',
                'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => 'e',
                'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => 'i',
                'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' => 'o',
                'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => 'u',
                'ç' | 'Ç' => 'c',
                'ñ' | 'Ñ' => 'n',
                'ß' => 's',
                other => other,
            };
            keep(c).then(|| c.to_ascii_lowercase())
        })
        .collect()
}

/// The formal name a given name stands for ("bob" -> "robert"); itself when none.
pub fn formal(folded: &str) -> &str {
    FORMAL.get(folded).copied().unwrap_or(folded)
}

/// Whether two folded given names are the same person's name in different forms.
pub fn same_formal(a: &str, b: &str) -> bool {
    !a.is_empty() && formal(a) == formal(b)
}

/// Double Metaphone primary code of a folded name; empty for an empty name.
pub fn phonetic(folded: &str) -> String {
    if folded.is_empty() { String::new() } else { METAPHONE.encode(folded) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_map_to_their_formal_name() {
        assert_eq!(formal("bob"), "robert");
        assert!(same_formal("bob", "robbie"));
        assert!(same_formal("liz", "elizabeth"));
        assert!(!same_formal("bob", "william"));
        assert_eq!(fold(" José O'Brien "), "joseobrien");
    }

    #[test]
    fn spellings_that_sound_alike_share_a_phonetic_key() {
        assert_eq!(phonetic("smith"), phonetic("smyth"));
        assert_eq!(phonetic("catherine"), phonetic("kathryn"));
        assert_ne!(phonetic("smith"), phonetic("jones"));
    }
}
