"""The built-in English stop words: words too common to say what anyone talks about, so the
offline reflector never lists one as a distinctive term nor names one as a subject
(`[subjects] stop_words` adds the community's own, see `offline_terms`).

Written as the full-text index tokenises (lower case, no diacritics, split at apostrophes:
"don't" is "don" and "t"), so a term is looked up as it is. A standard English list (function
words, pronouns, auxiliaries, common adverbs, numbers in words), contraction fragments, and the
filler of chat ("lol", "yeah", "thanks").
"""

from __future__ import annotations

_ENGLISH = """
a about above across after afterwards again against ago ahead all almost alone along already
also although always am among amongst an and another any anybody anyhow anyone anything anyway
anyways anywhere are around as aside at away back be became because become becomes becoming
been before beforehand behind being below beside besides best better between beyond both brief
but by came can cannot cant certain certainly clearly come comes could did do does doing done
down during each either else elsewhere enough especially etc even ever every everybody everyone
everything everywhere exactly except far few fewer first for former formerly forth from further
furthermore get gets getting give given gives go goes going gone got gotten had hardly has have
having he hence her here hereafter hereby herein hers herself him himself his how however i ie
if in indeed instead into is it its itself just keep keeps kept know known knows last lately
later latter least less let lets like likely little look looking looks made mainly make makes
many may maybe me meanwhile might mine more moreover most mostly much must my myself namely
near nearly need needs neither never nevertheless new next no nobody non none noone nor normally
not nothing now nowhere of off often oh ok okay old on once one ones only onto or other others
otherwise ought our ours ourselves out over overall own particular particularly per perhaps
please possible probably quite rather really regarding said same saw say saying says second see
seeing seem seemed seeming seems seen self selves sent several shall she should since so some
somebody somehow someone something sometime sometimes somewhat somewhere soon sorry still such
sure take taken taking tell than that thats the their theirs them themselves then thence there
thereafter thereby therefore therein theres these they thing things think this thorough
thoroughly those though through throughout thru thus to together too took toward towards tried
tries truly try trying twice under unless unlike unlikely until unto up upon us use used uses
using usually very via want wants was way ways we well went were what whatever when whence
whenever where whereafter whereas whereby wherein whereupon wherever whether which while whither
who whoever whole whom whose why will with within without would yes yet you your yours yourself
yourselves
zero one two three four five six seven eight nine ten eleven twelve twenty hundred thousand
first second third once twice
monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday tonight
"""

# "don't" → "don" "t", "they're" → "they" "re", "I'll" → "i" "ll": the fragments on their own.
_CONTRACTIONS = """
aren couldn didn doesn don hadn hasn haven isn mightn mustn needn shan shouldn wasn weren won
wouldn ain ll ve re s t d m
"""

_CHAT = """
lol lmao lmfao rofl haha hahaha hehe heh hmm hmmm huh yeah yea yep yup nope nah ya yes ok okay
oki thanks thank thx ty pls plz please sorry idk imo imho tbh btw fyi omg wow oops ugh uh um
umm hey hi hello bye gonna gotta wanna kinda sorta stuff guys guy folks anyone everyone pretty
lot lots bit actually basically literally probably definitely totally honestly just really
http https www com org net html
"""

BUILT_IN: frozenset[str] = frozenset((_ENGLISH + _CONTRACTIONS + _CHAT).split())
