"""Generated data with planted structure: a corpus in the Melon layout (`toy.melon`) and
a rendered audio collection (`toy.audio`), both drawn from one planted world
(`toy.world`)."""
