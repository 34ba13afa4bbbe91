package org.edgedeeplab.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

class ModelCardTest {
    @Test
    fun parsesFloatLogitsCard() {
        val labels = (0 until 21).joinToString(",", "[", "]") { "\"c$it\"" }
        val c = card(cardJson(labels = labels))
        assertEquals(257, c.inputHeight)
        assertEquals(257, c.inputWidth)
        assertEquals(TensorType.FLOAT32, c.inputType)
        assertArrayEquals(doubleArrayOf(127.5, 127.5, 127.5), c.mean, 0.0)
        assertEquals(OutputKind.LOGITS, c.outputKind)
        assertEquals(21, c.numClasses)
        assertEquals("c15", c.label(15))
        assertEquals(0, c.backgroundClass)
        assertEquals(2780176L, c.modelBytes)
        assertEquals("00", c.modelSha256)
    }

    @Test
    fun parsesQuantizedLabelsCard() {
        val c = card(cardJson(inputType = "uint8", inputScale = 0.0078125, inputZeroPoint = 128, mean = "128",
            std = "128.0", size = 513, kind = "labels", outputType = "int64", background = "null"))
        assertEquals(TensorType.UINT8, c.inputType)
        assertEquals(0.0078125, c.inputQuantization.scale, 0.0)
        assertEquals(128, c.inputQuantization.zeroPoint)
        assertArrayEquals(doubleArrayOf(128.0, 128.0, 128.0), c.std, 0.0) // one number means all channels
        assertEquals(OutputKind.LABELS, c.outputKind)
        assertEquals(TensorType.INT64, c.outputType)
        assertNull(c.backgroundClass)
        assertEquals("class 7", c.label(7)) // no labels in the card
        assertTrue(c.summary(), c.summary().contains("input 513x513 uint8 scale=0.0078125 zero_point=128"))
    }

    @Test
    fun explainsWhatIsWrong() {
        val cases = mapOf(
            cardJson(version = 2) to "version 2",
            cardJson(inputType = "float16") to "input.type 'float16'",
            cardJson(inputType = "uint8") to "input.scale must be > 0",
            cardJson(kind = "boxes") to "output.kind",
            cardJson(kind = "labels", outputType = "float32") to "output.type 'float32'",
            cardJson(numClasses = 1) to "num_classes must be at least 2",
            cardJson(labels = "[\"a\", \"b\"]") to "2 labels for 21 classes",
            cardJson(mean = "[1, 2]") to "input.mean must have 1 or 3 values",
            cardJson(std = "0") to "input.std must be non-zero",
            cardJson(size = 0) to "input.height must be positive",
            cardJson(background = "21") to "background_class 21",
            cardJson().replace("\"model_file\": \"model.tflite\",", "") to "no 'model_file'",
            cardJson().replace("\"height\": 257, \"width\": 257, \"channels\"", "\"height\": 2.5, \"width\": 257, \"channels\"") to
                "input.height must be an integer",
            "{\"format\": \"other\"}" to "format is 'other'",
            "[1]" to "must be a JSON object",
            "{" to "not valid JSON"
        )
        for ((json, expected) in cases) {
            try {
                ModelCard.parse(json)
                fail("accepted a card that should fail with '$expected'")
            } catch (e: ModelCardException) {
                assertTrue("'${e.message}' should mention '$expected'", e.message!!.contains(expected))
            }
        }
    }
}
