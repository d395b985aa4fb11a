"""The planted world both generators draw from: genre and tag vocabularies, the shared
rates of the planted structure (second genres, noise songs, borrowed grooves, ...), mood
words, popularity skews, the seeded random streams and the Melon corpus's presets.

Two generators use it: the Melon-layout corpus (:mod:`musicrep.toy.melon`, mels) and the
audio collection (:mod:`musicrep.toy.audio`, sound). Where their vocabularies differ,
both versions are kept here under ``MELON_*`` and ``AUDIO_*`` names: every list's
length and order feeds the random draws, so merging them would change both corpora.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ------------------------------------------------------------------ random streams


def seeded_rng(seed: int, salt: int, *key: int) -> np.random.Generator:
    """An independent random stream for (seed, salt, key...)."""
    return np.random.default_rng([int(seed), salt, *[int(k) for k in key]])


# Stream salts: each consumer of randomness gets its own stream so that changing one
# part of a generator does not reshuffle the others. The two generators use disjoint
# salts, so their worlds are drawn independently of each other.
class MelonSalt:
    """Salts of the Melon-layout generator (toy.melon_*)."""

    GENRE, CATALOG, PLAYLIST, DEFECT, MEL = 11, 23, 37, 41, 53
    METADATA = 59  # the genre-metadata errors of a preset (G2); no other preset draws it


class AudioSalt:
    """Salts of the audio generator (toy.audio_*)."""

    GENRE, CATALOG, PLAYLIST, TRACK = 101, 103, 107, 109


# ----------------------------------------------------------- rates of the structure

#: Share of songs/tracks with a second major genre.
SECOND_MAJOR_RATE = 0.15
#: Share of songs/tracks whose rhythm is borrowed from another (random) genre: audio is
#: evidence of genre, not proof of it.
BORROWED_RHYTHM_RATE = 0.2
#: Share of playlists themed on one major genre (the rest: two).
ONE_MAJOR_THEME_RATE = 0.7
#: Expected share of a playlist's songs drawn from anywhere, not from its theme.
NOISE_RATE = 0.1
#: Each major genre's mood lean is drawn from [-MOOD_CENTER_SPREAD, MOOD_CENTER_SPREAD].
MOOD_CENTER_SPREAD = 0.4
#: Song popularity is Zipf over a random ranking: 1 / (rank + 1) ** ZIPF_EXPONENT.
ZIPF_EXPONENT = 0.8


def genre_popularity(n_major: int, rng: np.random.Generator) -> np.ndarray:
    """Popularity of genres: mildly skewed, like a real catalogue (not all equal);
    shuffled over genres by `rng`, normalised to sum 1."""
    weights = rng.permutation(1.0 / np.arange(1, n_major + 1) ** 0.5)
    weights /= weights.sum()
    return weights


def zipf_popularity(rank: np.ndarray | float, exponent: float = ZIPF_EXPONENT
                    ) -> np.ndarray | float:
    """Popularity of the song(s) at `rank` (0 = most popular); a scalar or an array."""
    return 1.0 / (rank + 1.0) ** exponent


# ---------------------------------------------------------- presets of the Melon corpus


@dataclass(frozen=True)
class MelonPreset:
    """What one preset of the Melon corpus changes: only the playlists and the genre
    metadata. The catalogue (artists, albums, songs, true genres), the mels, the hidden
    mood and the popularity *ranking* are the same draws in every preset (their random
    streams never see these settings).

    G0 is the corpus as first built: every playlist genre-gated, so CF carries genre
    for every track and the views nest. G1 breaks the nesting the way the paper
    describes real data: most playlists are themed on a mood alone, popularity has a
    heavier tail, a few niche genres sit at its bottom (and few playlists are about
    them), and a song no playlist picked is put into a random one. So CF is close to
    noise for the long tail's genre, while the genre metadata still covers every track.
    G2 adds artist-level errors to the genre metadata (the audio and the playlists
    follow the true genre)."""

    name: str
    #: Share of playlists themed on 1-2 major genres and a mood; the rest on a mood alone.
    genre_gated_rate: float = 1.0
    #: Zipf exponent of song popularity over the (same) random ranking.
    zipf_exponent: float = ZIPF_EXPONENT
    #: How a song no playlist picked gets a place: "fitting" (a playlist of its genre and
    #: mood) or "random" (any playlist with room).
    orphans: str = "fitting"
    #: Major genres (the smallest by songs) whose songs take the bottom popularity ranks.
    niche_majors: int = 0
    #: How a genre-gated playlist picks its theme genres: by the genre weights of the
    #: catalogue (False), or by each genre's share of the popularity of the songs whose
    #: main genre it is (True: few playlists are about a genre few people listen to).
    themes_follow_popularity: bool = False
    #: Share of artists whose songs get a wrong major genre in song_meta.json.
    artist_genre_error_rate: float = 0.0


MELON_PRESETS: dict[str, MelonPreset] = {
    "G0": MelonPreset("G0"),
    "G1": MelonPreset("G1", genre_gated_rate=0.30, zipf_exponent=1.1, orphans="random",
                      niche_majors=2, themes_follow_popularity=True),
    "G2": MelonPreset("G2", genre_gated_rate=0.30, zipf_exponent=1.1, orphans="random",
                      niche_majors=2, themes_follow_popularity=True,
                      artist_genre_error_rate=0.2),
}
DEFAULT_PRESET = "G0"


def melon_preset(name: str) -> MelonPreset:
    """The preset called `name` (ValueError naming the valid ones otherwise)."""
    if name not in MELON_PRESETS:
        raise ValueError(f"preset must be one of {', '.join(MELON_PRESETS)}, got {name!r}")
    return MELON_PRESETS[name]


def mood_word(m: float) -> str:
    """The mood word of a mood value in [-1, 1]: "calm", "mid" or "energetic"."""
    return "calm" if m < -0.3 else ("energetic" if m > 0.3 else "mid")


# ---------------------------------------------------------------------- genres

# (major name, tag word, detail names).
# The Melon corpus: readable genre names in Melon's spirit (English), four details each
# (a major keeps 2-4 of them); names may hold "/" as real Melon names do. Majors beyond
# this list get generic names.
MELON_GENRES: list[tuple[str, str, list[str]]] = [
    ("Ballad", "ballad", ["'80s-'90s Ballad", "'00s Ballad", "'10s Ballad", "Acoustic Ballad"]),
    ("Dance", "dance", ["'80s-'90s Dance", "'00s Dance", "'10s Dance", "Electro Pop"]),
    ("Rap/Hip-hop", "hiphop", ["Old School", "Trap", "Boom Bap", "Alternative Hip-hop"]),
    ("R&B/Soul", "rnb", ["Contemporary R&B", "Neo Soul", "Funk", "Classic Soul"]),
    ("Indie", "indie", ["Indie Pop", "Indie Folk", "Lo-fi", "Dream Pop"]),
    ("Rock/Metal", "rock", ["Hard Rock", "Punk", "Heavy Metal", "Modern Rock"]),
    ("Trot", "trot", ["Classic Trot", "Modern Trot", "Semi-trot", "Trot Medley"]),
    ("Folk/Blues", "folk", ["Folk", "Blues", "Country", "Bluegrass"]),
    ("Electronica", "edm", ["House", "Techno", "Ambient", "Drum & Bass"]),
    ("Jazz", "jazz", ["Swing", "Bebop", "Fusion", "Vocal Jazz"]),
    ("Classical", "classical", ["Baroque", "Romantic", "Opera", "Chamber Music"]),
    ("OST", "ost", ["Drama OST", "Film OST", "Game OST", "Animation OST"]),
]
# The audio collection: three details each (a major keeps 2-3), and no "/" in names:
# in tracks.csv it separates Major/Detail. The list bounds n_major (at most 8).
AUDIO_GENRES: list[tuple[str, str, list[str]]] = [
    ("Electronic", "electronic", ["House", "Techno", "Ambient"]),
    ("Rock", "rock", ["Punk", "Hard Rock", "Indie Rock"]),
    ("Jazz", "jazz", ["Swing", "Bebop", "Fusion"]),
    ("Hip-hop", "hiphop", ["Boom Bap", "Trap", "Lo-fi"]),
    ("Classical", "classical", ["Baroque", "Romantic", "Minimal"]),
    ("Folk", "folk", ["Country", "Bluegrass", "Singer-songwriter"]),
    ("Reggae", "reggae", ["Roots", "Dub", "Ska"]),
    ("Pop", "pop", ["Synth-pop", "Ballad", "Dance-pop"]),
]

# ------------------------------------------------------------------ tags and titles

# Playlist tags by mood word. The Melon corpus has the richer vocabulary of a real
# playlist service; the audio collection a short one.
MELON_MOOD_TAGS = {
    "calm": ["chill", "calm", "relax", "sleep", "rainy day", "healing", "night", "sad"],
    "mid": ["cafe", "daily", "commute", "study", "weekend", "mood"],
    "energetic": ["energetic", "workout", "party", "drive", "upbeat", "running", "festival"],
}
AUDIO_MOOD_TAGS = {"calm": ["chill", "calm", "sleep", "relax"], "mid": ["study", "cafe", "daily"],
                   "energetic": ["workout", "party", "drive", "upbeat"]}

# Tags that say nothing about genre or mood.
MELON_NOISE_TAGS = ["favorites", "2010s", "memories", "spring", "summer", "autumn", "winter",
                    "love", "best", "hits", "retro", "new", "korean", "classic", "my list"]
AUDIO_NOISE_TAGS = ["favorites", "2010s", "summer", "night", "love", "retro", "new"]

# Playlist titles of the Melon corpus: "<mood word> <genre> <suffix>" (the audio
# collection titles its playlists "<Mood word> <genre> mix").
MELON_MOOD_TITLE = {
    "calm": ["Chill", "Calm", "Quiet", "Late-night", "Rainy-day", "Soft"],
    "mid": ["Everyday", "Cafe", "Weekend", "Commute", "Afternoon", "Easy"],
    "energetic": ["Energetic", "Workout", "Party", "Driving", "Upbeat", "Hype"],
}
MELON_TITLE_SUFFIX = ["mix", "playlist", "collection", "for today", "picks", "vibes",
                      "selection", "songs", "favourites", "time"]

# Song and album titles of the Melon corpus.
MELON_WORDS_ADJ = ["Blue", "Golden", "Silent", "Lost", "Bright", "Falling", "Endless", "Paper",
                   "Electric", "Velvet", "Midnight", "Summer", "Broken", "Little", "Wild",
                   "Secret", "Crystal", "Hidden", "Warm", "Neon", "Lonely", "Sweet", "Last"]
MELON_WORDS_NOUN = ["Night", "River", "Heart", "Dream", "City", "Road", "Rain", "Moon", "Letter",
                    "Garden", "Light", "Window", "Story", "Train", "Sky", "Song", "Shadow",
                    "Morning", "Ocean", "Star", "Memory", "Flower", "Wave", "Fire"]

# Syllables of artist names (and of track titles in the audio collection).
MELON_SYLLABLES = ["ka", "ri", "mo", "na", "se", "jin", "ho", "yu", "lee", "so", "min", "da",
                   "ra", "ten", "vo", "lu", "ne", "kai", "po", "zen", "mi", "ta", "shin", "el"]
AUDIO_SYLLABLES = ["ka", "ri", "mo", "na", "se", "jin", "ho", "yu", "lo", "so", "min", "da",
                   "ve", "tu"]
