package org.edgedeeplab.core

/**
 * Colours of the classes, packed 0xAARRGGBB (Android's colour int).
 *
 * The PASCAL VOC palette (the bits of the class id spread over R, G and B, most significant first),
 * which every DeepLab demo uses, so the colours match the papers' figures and the Python tools.
 * The background class is fully transparent so the camera picture shows through.
 */
class ColorMap(val numClasses: Int, val alpha: Int, val backgroundClass: Int?) {
    init {
        require(numClasses > 0) { "numClasses must be positive" }
        require(alpha in 0..255) { "alpha must be 0..255" }
    }

    private val colors = IntArray(numClasses) { id ->
        if (id == backgroundClass) 0 else (alpha shl 24) or vocRgb(id)
    }

    /** The colour of a class id; ids outside 0 until numClasses wrap around (a model may emit any id). */
    fun color(classId: Int): Int = colors[floorMod(classId, numClasses)]

    /** The opaque colour of a class (for the legend swatch). */
    fun opaqueColor(classId: Int): Int = (0xFF shl 24) or vocRgb(floorMod(classId, numClasses))

    /** Colours a mask into [out] (same size), ready for Bitmap.setPixels. */
    fun paint(mask: IntArray, out: IntArray) {
        require(out.size == mask.size) { "out holds ${out.size} pixels, the mask ${mask.size}" }
        for (i in mask.indices) {
            val id = mask[i]
            out[i] = if (id in 0 until numClasses) colors[id] else color(id)
        }
    }

    companion object {
        /** VOC palette colour of a class id as 0x00RRGGBB. */
        fun vocRgb(classId: Int): Int {
            var r = 0
            var g = 0
            var b = 0
            var id = classId
            var shift = 7
            while (id > 0 && shift >= 0) {
                r = r or ((id and 1) shl shift)
                g = g or (((id shr 1) and 1) shl shift)
                b = b or (((id shr 2) and 1) shl shift)
                id = id shr 3
                shift--
            }
            return (r shl 16) or (g shl 8) or b
        }

        private fun floorMod(a: Int, n: Int) = ((a % n) + n) % n
    }
}

/** One row of the legend: a class, and the share of the mask it covers. */
data class LegendEntry(val classId: Int, val label: String, val fraction: Float)

/**
 * The classes present in a mask, most pixels first, for the on-screen legend. The background class
 * and classes under [minFraction] of the pixels (specks) are left out.
 */
fun legendOf(mask: IntArray, card: ModelCard, minFraction: Float = 0.002f): List<LegendEntry> {
    if (mask.isEmpty()) return emptyList()
    val counts = IntArray(card.numClasses)
    for (id in mask) if (id in 0 until card.numClasses) counts[id]++
    val entries = ArrayList<LegendEntry>()
    for (id in counts.indices) {
        val fraction = counts[id].toFloat() / mask.size
        if (id != card.backgroundClass && counts[id] > 0 && fraction >= minFraction) {
            entries.add(LegendEntry(id, card.label(id), fraction))
        }
    }
    entries.sortWith(compareByDescending<LegendEntry> { it.fraction }.thenBy { it.classId })
    return entries
}
