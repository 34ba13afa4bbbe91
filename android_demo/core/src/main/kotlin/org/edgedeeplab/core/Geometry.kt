package org.edgedeeplab.core

import kotlin.math.max
import kotlin.math.min

/** An axis-aligned rectangle in pixel coordinates (pixel i covers [i, i + 1)). */
data class Box(val left: Float, val top: Float, val right: Float, val bottom: Float) {
    val width get() = right - left
    val height get() = bottom - top

    /** The same rectangle in an image scaled by (sx, sy), e.g. the model input mapped onto its output. */
    fun scaled(sx: Float, sy: Float) = Box(left * sx, top * sy, right * sx, bottom * sy)
}

/**
 * Fits a source image into a model input of [dstWidth] x [dstHeight] without distorting it: scaled
 * to fit, centred, the rest padded. The content rectangle is whole pixels so that the pixels the
 * camera frame is drawn on and the pixels the input encoder pads never overlap.
 */
class Letterbox(val srcWidth: Int, val srcHeight: Int, val dstWidth: Int, val dstHeight: Int) {
    init {
        require(srcWidth > 0 && srcHeight > 0 && dstWidth > 0 && dstHeight > 0) { "sizes must be positive" }
    }

    private val fit = min(dstWidth.toDouble() / srcWidth, dstHeight.toDouble() / srcHeight)

    /** Content size and offset in the model input, whole pixels (as edge_deeplab.runtime.interpreter's Placement.fit). */
    val contentWidth = min(dstWidth, max(1, Math.rint(srcWidth * fit).toInt()))
    val contentHeight = min(dstHeight, max(1, Math.rint(srcHeight * fit).toInt()))
    val offsetX = (dstWidth - contentWidth) / 2
    val offsetY = (dstHeight - contentHeight) / 2

    /** Scale from source to model input per axis (equal up to rounding of the content size). */
    val scaleX = contentWidth.toFloat() / srcWidth
    val scaleY = contentHeight.toFloat() / srcHeight

    /** Where the source image lies in the model input. */
    val content get() = Box(offsetX.toFloat(), offsetY.toFloat(), (offsetX + contentWidth).toFloat(),
        (offsetY + contentHeight).toFloat())

    /** Whether model-input pixel (x, y) shows the source image (true) or padding (false). */
    fun isContent(x: Int, y: Int) =
        x >= offsetX && x < offsetX + contentWidth && y >= offsetY && y < offsetY + contentHeight

    fun srcToDstX(x: Float) = x * scaleX + offsetX
    fun srcToDstY(y: Float) = y * scaleY + offsetY
    fun dstToSrcX(x: Float) = (x - offsetX) / scaleX
    fun dstToSrcY(y: Float) = (y - offsetY) / scaleY

    /**
     * The part of a model output of [outWidth] x [outHeight] (the mask, which may be smaller than the
     * input) that covers the source image: the region to draw over the camera picture.
     */
    fun contentInOutput(outWidth: Int, outHeight: Int): Box =
        content.scaled(outWidth.toFloat() / dstWidth, outHeight.toFloat() / dstHeight)
}

/**
 * Maps a camera frame as the sensor delivers it into the model input: rotate by [rotationDegrees]
 * clockwise (CameraX's ImageInfo.getRotationDegrees, the rotation that makes the frame upright),
 * then letterbox into [inputWidth] x [inputHeight].
 */
class FrameTransform(
    val frameWidth: Int,
    val frameHeight: Int,
    val rotationDegrees: Int,
    inputWidth: Int,
    inputHeight: Int
) {
    init {
        require(rotationDegrees == 0 || rotationDegrees == 90 || rotationDegrees == 180 || rotationDegrees == 270) {
            "rotation must be 0, 90, 180 or 270 degrees, got $rotationDegrees"
        }
    }

    private val swapsAxes = rotationDegrees == 90 || rotationDegrees == 270

    /** Size of the frame once upright (what the user sees). */
    val uprightWidth = if (swapsAxes) frameHeight else frameWidth
    val uprightHeight = if (swapsAxes) frameWidth else frameHeight

    val letterbox = Letterbox(uprightWidth, uprightHeight, inputWidth, inputHeight)

    /** Frame point -> upright point (continuous pixel coordinates). */
    fun toUpright(x: Float, y: Float): FloatArray = when (rotationDegrees) {
        90 -> floatArrayOf(frameHeight - y, x)
        180 -> floatArrayOf(frameWidth - x, frameHeight - y)
        270 -> floatArrayOf(y, frameWidth - x)
        else -> floatArrayOf(x, y)
    }

    /** Frame point -> model input point. */
    fun toInput(x: Float, y: Float): FloatArray {
        val p = toUpright(x, y)
        return floatArrayOf(letterbox.srcToDstX(p[0]), letterbox.srcToDstY(p[1]))
    }

    /**
     * The frame -> model input mapping as a row-major 3x3 affine matrix, the value order of
     * android.graphics.Matrix.setValues: [sx, kx, tx, ky, sy, ty, 0, 0, 1].
     */
    fun matrix(): FloatArray {
        // upright = (a x + b y + c, d x + e y + f); read off exactly (small integers), then letterboxed
        val o = toUpright(0f, 0f)
        val ex = toUpright(1f, 0f)
        val ey = toUpright(0f, 1f)
        val sx = letterbox.scaleX
        val sy = letterbox.scaleY
        return floatArrayOf(
            sx * (ex[0] - o[0]), sx * (ey[0] - o[0]), sx * o[0] + letterbox.offsetX,
            sy * (ex[1] - o[1]), sy * (ey[1] - o[1]), sy * o[1] + letterbox.offsetY,
            0f, 0f, 1f
        )
    }
}

/**
 * Where an image of [srcWidth] x [srcHeight] appears in a view of [viewWidth] x [viewHeight] when it
 * is scaled to fill the view and centred (cropping the overflow): PreviewView's FILL_CENTER.
 */
fun fillCenter(srcWidth: Int, srcHeight: Int, viewWidth: Int, viewHeight: Int): Box {
    val s = max(viewWidth.toFloat() / srcWidth, viewHeight.toFloat() / srcHeight)
    val w = srcWidth * s
    val h = srcHeight * s
    val left = (viewWidth - w) / 2f
    val top = (viewHeight - h) / 2f
    return Box(left, top, left + w, top + h)
}
