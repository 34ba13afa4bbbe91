package org.edgedeeplab.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test
import java.util.Random

class GeometryTest {
    @Test
    fun letterboxesLandscapeFrameIntoSquareInput() {
        val lb = Letterbox(640, 480, 257, 257)
        assertEquals(257, lb.contentWidth)
        assertEquals(193, lb.contentHeight) // 480 * 257 / 640 = 192.75
        assertEquals(0, lb.offsetX)
        assertEquals(32, lb.offsetY)
        assertEquals(Box(0f, 32f, 257f, 225f), lb.content)
        assertTrue(lb.isContent(0, 32))
        assertTrue(lb.isContent(256, 224))
        assertFalse(lb.isContent(0, 31))
        assertFalse(lb.isContent(0, 225))
        // the frame's corners land on the content's corners
        assertEquals(0f, lb.srcToDstX(0f), 1e-4f)
        assertEquals(257f, lb.srcToDstX(640f), 1e-4f)
        assertEquals(32f, lb.srcToDstY(0f), 1e-4f)
        assertEquals(225f, lb.srcToDstY(480f), 1e-4f)
    }

    @Test
    fun inverseMappingUndoesForwardMapping() {
        val rnd = Random(7)
        for (size in listOf(intArrayOf(640, 480, 257, 257), intArrayOf(480, 640, 513, 513), intArrayOf(100, 100, 64, 32))) {
            val lb = Letterbox(size[0], size[1], size[2], size[3])
            repeat(50) {
                val x = rnd.nextFloat() * size[0]
                val y = rnd.nextFloat() * size[1]
                assertEquals(x, lb.dstToSrcX(lb.srcToDstX(x)), 1e-3f)
                assertEquals(y, lb.dstToSrcY(lb.srcToDstY(y)), 1e-3f)
            }
            // content always fits and is centred within a pixel
            assertTrue(lb.contentWidth <= size[2] && lb.contentHeight <= size[3])
            assertTrue(Math.abs((size[2] - lb.contentWidth - lb.offsetX) - lb.offsetX) <= 1)
            assertTrue(Math.abs((size[3] - lb.contentHeight - lb.offsetY) - lb.offsetY) <= 1)
        }
    }

    @Test
    fun contentInOutputScalesToTheMaskSize() {
        val lb = Letterbox(640, 480, 513, 513)
        val box = lb.contentInOutput(65, 65) // e.g. a stride-8 output
        assertEquals(lb.offsetY * 65f / 513f, box.top, 1e-4f)
        assertEquals(65f, box.width, 1e-4f)
        assertEquals(lb.contentHeight * 65f / 513f, box.height, 1e-4f)
    }

    @Test
    fun rotationMapsFrameCornersToUprightCorners() {
        // a 640x480 sensor frame of a phone held upright: rotate 90 degrees clockwise -> 480x640
        val t = FrameTransform(640, 480, 90, 257, 257)
        assertEquals(480, t.uprightWidth)
        assertEquals(640, t.uprightHeight)
        assertPoint(floatArrayOf(480f, 0f), t.toUpright(0f, 0f)) // top-left -> top-right
        assertPoint(floatArrayOf(480f, 640f), t.toUpright(640f, 0f)) // top-right -> bottom-right
        assertPoint(floatArrayOf(0f, 0f), t.toUpright(0f, 480f)) // bottom-left -> top-left
        val t270 = FrameTransform(640, 480, 270, 257, 257)
        assertPoint(floatArrayOf(0f, 640f), t270.toUpright(0f, 0f))
        val t180 = FrameTransform(640, 480, 180, 257, 257)
        assertPoint(floatArrayOf(640f, 480f), t180.toUpright(0f, 0f))
        val t0 = FrameTransform(640, 480, 0, 257, 257)
        assertPoint(floatArrayOf(10f, 20f), t0.toUpright(10f, 20f))
    }

    @Test
    fun matrixAgreesWithPointMapping() {
        val rnd = Random(3)
        for (rotation in listOf(0, 90, 180, 270)) {
            val t = FrameTransform(640, 480, rotation, 257, 193)
            val m = t.matrix()
            assertEquals(0f, m[6], 0f)
            assertEquals(0f, m[7], 0f)
            assertEquals(1f, m[8], 0f)
            repeat(20) {
                val x = rnd.nextFloat() * 640
                val y = rnd.nextFloat() * 480
                val expected = t.toInput(x, y)
                assertPoint(expected, floatArrayOf(m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]))
            }
            // the whole frame lands exactly on the letterbox content
            val a = t.toInput(0f, 0f)
            val b = t.toInput(640f, 480f)
            val c = t.letterbox.content
            assertEquals(c.left, Math.min(a[0], b[0]), 1e-3f)
            assertEquals(c.right, Math.max(a[0], b[0]), 1e-3f)
            assertEquals(c.top, Math.min(a[1], b[1]), 1e-3f)
            assertEquals(c.bottom, Math.max(a[1], b[1]), 1e-3f)
        }
    }

    @Test(expected = IllegalArgumentException::class)
    fun rejectsOddRotation() {
        FrameTransform(640, 480, 45, 257, 257)
    }

    @Test
    fun fillCenterCoversTheViewAndCrops() {
        // a 480x640 upright frame on a 1080x2400 portrait screen: scaled by 3.75, cropped left and right
        val box = fillCenter(480, 640, 1080, 2400)
        assertEquals(2400f, box.height, 1e-3f)
        assertEquals(1800f, box.width, 1e-3f)
        assertEquals(-360f, box.left, 1e-3f)
        assertEquals(0f, box.top, 1e-3f)
        val same = fillCenter(480, 640, 480, 640)
        assertEquals(Box(0f, 0f, 480f, 640f), same)
    }

    private fun assertPoint(expected: FloatArray, actual: FloatArray) {
        assertEquals(expected[0], actual[0], 1e-3f)
        assertEquals(expected[1], actual[1], 1e-3f)
    }
}
