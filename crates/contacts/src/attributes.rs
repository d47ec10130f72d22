//! Custom attribute types per workspace: the first value of an attribute fixes its type, and
//! every later value must match it.

use std::collections::{BTreeSet, HashMap};

use clarion_model::{
    AttributeName, AttributeType, ModelError, Timestamp, WorkspaceId, entity::attribute_definition,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{OnConflict, Query},
};

use crate::ContactsError;

/// The types of the attributes one batch touches, loaded once for the batch.
pub struct AttributeTypes {
    known: HashMap<AttributeName, AttributeType>,
    new: Vec<(AttributeName, AttributeType)>,
}

impl AttributeTypes {
    /// Loads the definitions of `names` in the workspace.
    pub async fn load(
        db: &impl ConnectionTrait,
        workspace: WorkspaceId,
        names: BTreeSet<AttributeName>,
    ) -> Result<Self, ContactsError> {
        let mut known = HashMap::new();
        let names: Vec<String> = names.into_iter().map(String::from).collect();
        for chunk in names.chunks(500) {
            let rows = attribute_definition::Entity::find()
                .filter(attribute_definition::Column::WorkspaceId.eq(workspace.0))
                .filter(attribute_definition::Column::Name.is_in(chunk.iter().cloned()))
                .all(db)
                .await?;
            for row in rows {
                let name = AttributeName::parse(row.name)
                    .map_err(crate::corrupt("attribute_definitions.name"))?;
                let kind =
                    AttributeType::parse(&row.attr_type).ok_or_else(|| ContactsError::Corrupt {
                        column: "attribute_definitions.attr_type",
                        reason: row.attr_type.clone(),
                    })?;
                known.insert(name, kind);
            }
        }
        Ok(AttributeTypes {
            known,
            new: Vec::new(),
        })
    }

    /// Checks a value against its attribute's type; an attribute seen for the first time takes
    /// the type of this value. `null` (removal) always passes.
    pub fn check(
        &mut self,
        name: &AttributeName,
        value: &serde_json::Value,
    ) -> Result<(), ModelError> {
        if value.is_null() {
            return Ok(());
        }
        match self.known.get(name) {
            Some(kind) => kind.check(name, value),
            None => {
                let kind = AttributeType::infer(name, value)?;
                self.known.insert(name.clone(), kind);
                self.new.push((name.clone(), kind));
                Ok(())
            }
        }
    }

    /// Records the attributes first seen in this batch.
    pub async fn save_new(
        &self,
        db: &impl ConnectionTrait,
        workspace: WorkspaceId,
    ) -> Result<(), ContactsError> {
        if self.new.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now().millis();
        let mut insert = Query::insert();
        insert.into_table(attribute_definition::Entity).columns([
            attribute_definition::Column::WorkspaceId,
            attribute_definition::Column::Name,
            attribute_definition::Column::AttrType,
            attribute_definition::Column::CreatedAt,
        ]);
        for (name, kind) in &self.new {
            insert
                .values([
                    workspace.0.into(),
                    name.as_str().into(),
                    kind.as_str().into(),
                    now.into(),
                ])
                .map_err(|e| ContactsError::Db(sea_orm::DbErr::Custom(e.to_string())))?;
        }
        insert.on_conflict(
            OnConflict::columns([
                attribute_definition::Column::WorkspaceId,
                attribute_definition::Column::Name,
            ])
            .do_nothing()
            .to_owned(),
        );
        db.execute(&insert).await?;
        Ok(())
    }
}

impl AttributeTypes {
    /// The declared type of an attribute, if the workspace has one of that name.
    pub fn declared(&self, name: &AttributeName) -> Option<AttributeType> {
        self.known.get(name).copied()
    }
}
