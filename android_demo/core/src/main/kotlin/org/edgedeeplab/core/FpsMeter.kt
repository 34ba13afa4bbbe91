package org.edgedeeplab.core

/**
 * Frames per second over the last [window] frames, from frame timestamps in nanoseconds
 * (System.nanoTime or the camera's timestamps).
 */
class FpsMeter(private val window: Int = 30) {
    private val times = LongArray(window)
    private var count = 0
    private var next = 0

    init {
        require(window >= 2) { "window must hold at least 2 frames" }
    }

    /** Records a frame at [nanos] and returns the current rate (0 until two frames were seen). */
    fun tick(nanos: Long): Float {
        times[next] = nanos
        next = (next + 1) % window
        if (count < window) count++
        if (count < 2) return 0f
        val newest = times[(next - 1 + window) % window]
        val oldest = times[(next - count + window) % window]
        val span = newest - oldest
        return if (span <= 0) 0f else (count - 1) * 1e9f / span
    }

    /** Forgets the frames seen (e.g. when the accelerator changes). */
    fun reset() {
        count = 0
        next = 0
    }
}
