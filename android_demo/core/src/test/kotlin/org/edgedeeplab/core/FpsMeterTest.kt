package org.edgedeeplab.core

import org.junit.Assert.assertEquals
import org.junit.Test

class FpsMeterTest {
    @Test
    fun fpsMeterAveragesOverTheWindow() {
        val fps = FpsMeter(window = 5)
        assertEquals(0f, fps.tick(0L), 0f)
        assertEquals(10f, fps.tick(100_000_000L), 1e-3f)
        for (i in 2..10) fps.tick(i * 100_000_000L)
        assertEquals(10f, fps.tick(11 * 100_000_000L), 1e-3f)
        // a slow frame pulls the rate down: the window holds 0.8, 0.9, 1.0, 1.1 and 1.3 s, 4 intervals in 0.5 s
        assertEquals(8f, fps.tick(13 * 100_000_000L), 1e-3f)
        fps.reset()
        assertEquals(0f, fps.tick(20 * 100_000_000L), 0f) // one frame: no rate yet
        assertEquals(5f, fps.tick(22 * 100_000_000L), 1e-3f)
    }
}
