// Versions checked together: AGP 8.7 needs Gradle 8.9+ (gradle/wrapper/gradle-wrapper.properties) and JDK 17.
plugins {
    id("com.android.application") version "8.7.3" apply false
    id("org.jetbrains.kotlin.android") version "2.0.21" apply false
    id("org.jetbrains.kotlin.jvm") version "2.0.21" apply false
}
