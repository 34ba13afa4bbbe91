// Plain Kotlin, no Android: the app's pure logic, unit-tested on the JVM (`./gradlew :core:test`, or
// run_jvm_tests.sh with Debian's kotlinc, which is Kotlin 1.3: keep this code to 1.3 language and stdlib).
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    id("org.jetbrains.kotlin.jvm")
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    testImplementation("junit:junit:4.13.2")
}
