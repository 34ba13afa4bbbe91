package org.edgedeeplab.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Test
import java.io.File

/**
 * Cards written by the real `edge-deeplab export-android` (run_jvm_tests.sh CARD.json ... passes them
 * as the system property edgedeeplab.cards): each must parse, and a frame must go through the whole
 * pure pipeline (rotate + letterbox, encode, decode an output of the card's type, colour).
 * Prints per card a `parsed <path>: <summary>` line, a `lut <path>: ...` line (the tensor value of
 * each pixel value 0..255, channel R, G then B) and a `letterbox <path>: WxH=top,left,height,width;...`
 * line, which tests/test_android.py compares with what it exported and with what the Python runtime
 * feeds the model.
 */
class ExportedCardsTest {
    private companion object {
        val FRAME_SIZES = listOf(640 to 480, 480 to 640, 1280 to 720, 257 to 257, 100 to 37, 33 to 1000)
    }

    @Test
    fun exportedCardsParseAndRunThroughThePipeline() {
        val paths = (System.getProperty("edgedeeplab.cards") ?: "").split(File.pathSeparator).filter { it.isNotEmpty() }
        assumeTrue("no exported cards given (run_jvm_tests.sh CARD.json ...)", paths.isNotEmpty())
        for (path in paths) {
            val card = ModelCard.parse(File(path).readText())
            println("\nparsed $path: ${card.summary()}") // own line: JUnit prints progress dots without one

            val transform = FrameTransform(640, 480, 90, card.inputWidth, card.inputHeight)
            val pixels = IntArray(card.inputWidth * card.inputHeight) { (0xFF shl 24) or (it * 2654435761L).toInt() }
            val encoder = InputEncoder(card)
            val lut = (0 until 3).flatMap { c -> (0 until 256).map { v ->
                if (card.inputType == TensorType.FLOAT32) encoder.floatValue(c, v).toString()
                else (if (card.inputType == TensorType.UINT8) encoder.byteValue(c, v).toInt() and 0xFF
                      else encoder.byteValue(c, v).toInt()).toString()
            } }
            println("lut $path: ${lut.joinToString(",")}")
            val boxes = FRAME_SIZES.map { (w, h) ->
                val lb = Letterbox(w, h, card.inputWidth, card.inputHeight)
                "${w}x$h=${lb.offsetY},${lb.offsetX},${lb.contentHeight},${lb.contentWidth}"
            }
            println("letterbox $path: ${boxes.joinToString(";")}")
            if (card.inputType == TensorType.FLOAT32) {
                val input = FloatArray(encoder.size)
                encoder.encodeFloat(pixels, transform.letterbox, input)
                assertTrue(input.all { it.isFinite() })
            } else {
                encoder.encodeQuantized(pixels, transform.letterbox, ByteArray(encoder.size))
            }

            val output = OutputData.allocate(card)
            val classes = card.numClasses
            when (output) { // an output with every class id present
                is OutputData.Floats -> for (p in 0 until output.values.size / classes) output.values[p * classes + p % classes] = 1f
                is OutputData.Bytes -> for (i in output.values.indices) output.values[i] =
                    if (card.outputKind == OutputKind.LABELS) (i % classes).toByte()
                    else if (i % classes == (i / classes) % classes) 100.toByte() else 0.toByte()
                is OutputData.Ints -> for (i in output.values.indices) output.values[i] = i % classes
                is OutputData.Longs -> for (i in output.values.indices) output.values[i] = (i % classes).toLong()
            }
            val mask = IntArray(card.outputWidth * card.outputHeight)
            MaskDecoder(card).decode(output, mask)
            for (i in mask.indices) assertEquals(i % classes, mask[i])

            val colors = IntArray(mask.size)
            ColorMap(classes, 0x90, card.backgroundClass).paint(mask, colors)
            val background = card.backgroundClass
            if (background != null) assertEquals(0, colors[background]) // transparent over the camera picture
            if (mask.size >= classes) { // every class is present; the background is left out of the legend
                val expected = if (card.backgroundClass == null) classes else classes - 1
                assertEquals(expected, legendOf(mask, card, minFraction = 0f).size)
            }
        }
    }
}
