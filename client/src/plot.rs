//! PNG plots of the evaluation: for one request type, latency against `p`, cache on
//! versus off (mean on the left, p99 on the right). Uses plotters' bitmap backend with
//! a bundled font, so no system font libraries are needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::ClientError;

/// One line: a label and its (p, milliseconds) points.
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

pub(crate) fn err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Other(format!("plotting failed: {e}"))
}

/// Draws `panels` (title, lines) side by side into a PNG at `path`.
pub fn latency_plot(
    path: &Path,
    title: &str,
    panels: &[(&str, Vec<Line>)],
) -> Result<(), ClientError> {
    register_font();
    let root = BitMapBackend::new(path, (1100, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(err)?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
    ];
    for ((name, lines), area) in panels.iter().zip(areas.iter()) {
        let y_max = lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            .max(0.01)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(*name, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.02f64..0.82f64, 0f64..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("p (probability of ordering)")
            .y_desc("latency (ms)")
            .x_labels(5)
            .draw()
            .map_err(err)?;
        for (i, line) in lines.iter().enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(line.points.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(line.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    line.points
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
                )
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
