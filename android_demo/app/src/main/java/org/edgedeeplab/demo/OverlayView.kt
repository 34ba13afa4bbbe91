package org.edgedeeplab.demo

import android.content.Context
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Matrix
import android.graphics.Paint
import android.graphics.RectF
import android.util.AttributeSet
import android.view.View
import org.edgedeeplab.core.fillCenter

/**
 * Draws the coloured mask over the camera preview, where the frame it came from is shown, and a
 * legend of the classes present.
 *
 * The preview (PreviewView, FILL_CENTER) and the analysed frames share one aspect ratio (both use
 * the 4:3 resolution selector), so the upright analysed frame placed with the same fill-centre rule
 * covers exactly what the user sees.
 */
class OverlayView(context: Context, attrs: AttributeSet?) : View(context, attrs) {
    private var segmentation: Segmentation? = null

    private val maskPaint = Paint(Paint.FILTER_BITMAP_FLAG)
    private val maskMatrix = Matrix()
    private val source = RectF()
    private val target = RectF()

    private val density = resources.displayMetrics.density
    private val textPaint = Paint(Paint.ANTI_ALIAS_FLAG).apply {
        color = Color.WHITE
        textSize = 14f * density
        setShadowLayer(2f * density, 0f, 0f, Color.BLACK)
    }
    private val swatchPaint = Paint()

    fun show(result: Segmentation) {
        segmentation = result
        invalidate()
    }

    fun clear() {
        segmentation = null
        invalidate()
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        val s = segmentation ?: return
        val shown = fillCenter(s.uprightWidth, s.uprightHeight, width, height)
        val region = s.maskRegion
        source.set(region.left, region.top, region.right, region.bottom)
        target.set(shown.left, shown.top, shown.right, shown.bottom)
        maskMatrix.setRectToRect(source, target, Matrix.ScaleToFit.FILL)
        canvas.save()
        canvas.clipRect(target) // the mask's padding rows / columns stay off screen
        canvas.drawBitmap(s.mask, maskMatrix, maskPaint)
        canvas.restore()
        drawLegend(canvas, s)
    }

    private fun drawLegend(canvas: Canvas, s: Segmentation) {
        val pad = 8f * density
        val swatch = textPaint.textSize
        var y = pad + swatch
        for (entry in s.legend.take(MAX_LEGEND_ROWS)) {
            swatchPaint.color = s.colors.opaqueColor(entry.classId)
            canvas.drawRect(pad, y - swatch, pad + swatch, y, swatchPaint)
            val percent = Math.round(entry.fraction * 100f)
            canvas.drawText("${entry.label}  $percent%", pad + swatch * 1.5f, y - 0.15f * swatch, textPaint)
            y += swatch * 1.4f
        }
    }

    private companion object {
        const val MAX_LEGEND_ROWS = 8
    }
}
