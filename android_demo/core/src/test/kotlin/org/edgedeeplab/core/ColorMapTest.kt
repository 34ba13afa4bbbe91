package org.edgedeeplab.core

import org.junit.Assert.assertEquals
import org.junit.Test

class ColorMapTest {
    @Test
    fun usesThePascalVocPalette() {
        assertEquals(0x000000, ColorMap.vocRgb(0))
        assertEquals(0x800000, ColorMap.vocRgb(1)) // aeroplane (128, 0, 0)
        assertEquals(0xC08080, ColorMap.vocRgb(15)) // person (192, 128, 128)
        assertEquals(0x004080, ColorMap.vocRgb(20)) // tv monitor (0, 64, 128)
        val seen = HashSet<Int>()
        for (id in 0 until 256) seen.add(ColorMap.vocRgb(id))
        assertEquals(256, seen.size) // every class of a 256-class model is distinguishable
    }

    @Test
    fun backgroundIsTransparentAndOthersCarryAlpha() {
        val cm = ColorMap(21, 0x80, backgroundClass = 0)
        val out = IntArray(4)
        cm.paint(intArrayOf(0, 15, 1, 22), out)
        assertEquals(0, out[0])
        assertEquals(0x80C08080.toInt(), out[1])
        assertEquals(0x80800000.toInt(), out[2])
        assertEquals(cm.color(1), out[3]) // out-of-range ids wrap instead of crashing
        assertEquals(cm.color(20), cm.color(-1))
        assertEquals(0xFFC08080.toInt(), cm.opaqueColor(15))
        val noBackground = ColorMap(21, 0xFF, backgroundClass = null)
        assertEquals(0xFF000000.toInt(), noBackground.color(0))
    }

    @Test
    fun legendListsPresentClassesLargestFirst() {
        val labels = (0 until 21).joinToString(",", "[", "]") { if (it == 15) "\"person\"" else "\"c$it\"" }
        val c = card(cardJson(labels = labels))
        val mask = IntArray(1000)
        for (i in 0 until 300) mask[i] = 15
        for (i in 300 until 700) mask[i] = 7
        mask[999] = 3 // one pixel: a speck under the threshold
        val legend = legendOf(mask, c)
        assertEquals(listOf(7, 15), legend.map { it.classId })
        assertEquals("person", legend[1].label)
        assertEquals(0.3f, legend[1].fraction, 1e-6f)
    }
}
